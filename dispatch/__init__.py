"""The runner: claims due triggers with a lease and runs the flows for them in batches."""
