"""The patrol inspection's steps."""
