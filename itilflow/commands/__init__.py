"""The CLI's subcommands, a module per group; each exposes add_<name>_commands(subparsers)."""
