"""The directory import's steps, one task a file."""
