"""The problem review's steps."""
