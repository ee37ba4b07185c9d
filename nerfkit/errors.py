"""User-facing errors.

Anything a user can get wrong (a missing file, malformed JSON, a bad pose, an unknown preset) raises
:class:`InputError`. The CLI catches it, prints one line to stderr and exits with code 2, so users never
see a traceback for their own mistakes.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A problem with user input. ``str(err)`` is a one-line message naming the file and the field."""

    def __init__(self, message: str, path: str | Path | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path
            if field is not None:
                where += f" [{field}]"
            where += ": "
        elif field is not None:
            where = f"[{field}]: "
        super().__init__(f"{where}{message}")
