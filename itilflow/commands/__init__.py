"""`itilflow` subcommands, one module per area, each exposing `add_<name>_commands(subparsers)`."""
