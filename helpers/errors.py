"""Errors that are the user's to fix: the command line prints them as one line and exits 2."""

from __future__ import annotations


def _row_text(row: str | int) -> str:
    """"line 3", "index 0", "id 7" stay as they are; a bare value becomes "row 7"."""
    text = str(row)
    return text if text.split(" ")[0] in ("line", "index", "id", "qid", "row") else f"row {text}"


class UserError(Exception):
    """Bad input or a setting this machine cannot honour; the message says what to change."""


class DataError(UserError, ValueError):
    """Bad data, located: the message names the file, the row (id or line) and the field."""

    def __init__(self, problem: str, file: str | None = None, row: str | int | None = None,
                 field: str | None = None):
        self.problem, self.file, self.row, self.field = problem, file, row, field
        where = [part for part in (
            str(file) if file else None,
            _row_text(row) if row is not None else None,
            f"field {field!r}" if field else None,
        ) if part]
        super().__init__(": ".join([*where, problem]))
