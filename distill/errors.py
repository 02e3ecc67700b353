"""The one base of every user-facing error.

A `DistillError` is something the user can fix (a config key, a data file, a checkpoint name): the command
line prints its message as one line and exits with status 2. Any other exception is a bug in distillery and
keeps its traceback. Each wing defines its own subclasses next to the code that raises them."""

from __future__ import annotations


class DistillError(Exception):
    """A problem with the user's input or environment, explained in one line that names the file, line, key
    or value at fault and what was expected."""
