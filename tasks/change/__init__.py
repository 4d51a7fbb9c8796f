"""The change process's steps."""
