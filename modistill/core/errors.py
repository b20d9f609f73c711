"""One base class for every error modistill raises on bad input, bad settings or bad files.

`modistill.cli.main` catches `ModistillError` and prints ``error: <message>`` (no traceback) with exit
status 2; anything else is a bug and keeps its traceback. Subclasses also derive from the builtin type they
replaced (``ValueError``, ``RuntimeError``) so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations


class ModistillError(Exception):
    """Base of all library errors that describe a user-side problem (file, setting, data)."""

    #: process exit status the CLI uses for this error
    exit_code: int = 2


class UsageError(ModistillError, ValueError):
    """A command-line or API argument that cannot be used as given."""


class SchemaError(ModistillError, ValueError):
    """A file written by modistill that is missing, malformed, of another kind or of an unknown version."""
