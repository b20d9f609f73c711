"""Subcommands of the `modistill` CLI; each module defines `register(parser)` and sets `func`."""
