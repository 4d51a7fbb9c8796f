"""The monthly report's steps."""
