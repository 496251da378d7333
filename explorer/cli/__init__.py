"""The command-line interface's subcommands."""
