"""What carries out a change's plan (shell and HTTP steps, their undo) and nothing else."""
