"""The incident process's steps, one task a file."""
