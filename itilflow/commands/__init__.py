"""The CLI's subcommands, one module each, added to the parser by itilflow/cli.py."""
