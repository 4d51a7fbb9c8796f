"""Rules that span several records, shared by the API, the CLI and the flows."""
