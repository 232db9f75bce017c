"""The fields each format reads, which format a record is in, and the rule that no field is dropped silently.

Each format declares (Fields) the fields it needs (detection looks for them), those it reads when they are there,
and a short list it may leave unread: ids, scores and metadata. Every other field of a record is refused with the
row and the field's name, so nothing is lost without a word; above all a field that holds part of the prompt
(PROMPT_LIKE: conversations, question, history, system, instruction, input, …), which a format that does not read
it would drop, training answers with no question.

Detection (detect) takes the formats whose needed fields the first record has and whose values fit them, then the
one among those that accounts for every field of the record. None: the file is refused as an unknown format,
naming the formats that came close and the fields each would leave unread; several: as ambiguous, naming them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helpers.data_rows import Where
from helpers.errors import DataError

# Fields that hold (part of) a prompt somewhere: never on a format's list of fields it may leave unread.
PROMPT_LIKE = ("prompt", "question", "query", "instruction", "input", "system", "system_prompt", "history",
               "conversations", "conversation", "messages", "dialog", "dialogue", "context", "turns", "text")
# Ids, scores and metadata that any preference format may leave unread: they do not change what the pair says.
IDS_SCORES_METADATA = ("id", "idx", "uid", "uuid", "prompt_id", "source", "source_index", "metadata", "meta",
                       "lang", "language", "category", "score_chosen", "score_rejected")


@dataclass(frozen=True)
class Fields:
    """What one format reads: needed fields, fields read when present, and fields it may leave unread."""

    needed: tuple[str, ...]
    optional: tuple[str, ...] = ()
    ignorable: tuple[str, ...] = ()  # this format's own, beside IDS_SCORES_METADATA
    fits: Callable[[dict], bool] | None = None  # a test of the values, where field names alone do not tell

    def matches(self, record: dict) -> bool:
        """The record has the needed fields, with values that fit."""
        return all(key in record for key in self.needed) and (self.fits is None or self.fits(record))

    def unread(self, record: dict) -> list[str]:
        """The record's fields this format neither reads nor may leave unread, prompt-like ones first."""
        known = {*self.needed, *self.optional, *self.ignorable, *IDS_SCORES_METADATA}
        return sorted((key for key in record if key not in known), key=lambda key: key not in PROMPT_LIKE)


def refuse_unread(record: dict, name: str, fields: Fields) -> None:
    """Raise a DataError naming the first field of the record that the format would drop."""
    unread = fields.unread(record)
    if not unread:
        return
    field, others = unread[0], ", ".join(repr(key) for key in unread[1:])
    also = f" (so would {others})" if others else ""
    reads = ", ".join([*fields.needed, *fields.optional])
    if field in PROMPT_LIKE:
        problem = (f"holds part of the prompt, and format {name} does not read it (it reads {reads}): converting "
                   f"would drop it{also}; the prompt would be lost")
    else:
        may_skip = ", ".join([*fields.ignorable, *IDS_SCORES_METADATA][:6])
        problem = (f"is not read by format {name} (it reads {reads}, and leaves out only ids, scores and metadata: "
                   f"{may_skip}, …): converting would drop it{also}; remove it from the file if it may be lost")
    raise DataError(problem, field=field)


def _near(formats: dict[str, Fields], names: list[str], record: dict) -> str:
    """"orca would leave 'conversations' unread; sharegpt would leave 'question' unread"."""
    return "; ".join(f"{name} would leave {', '.join(repr(f) for f in formats[name].unread(record))} unread"
                     for name in names)


def detect(record: Any, formats: dict[str, Fields], file: Where = None) -> str:
    """The one format whose needed fields the record has and which accounts for all its fields (rules above)."""
    keys = sorted(record) if isinstance(record, dict) else []
    candidates = [name for name, fields in formats.items() if keys and fields.matches(record)]
    whole = [name for name in candidates if not formats[name].unread(record)]
    if len(whole) == 1:
        return whole[0]
    if len(whole) > 1:
        raise DataError(f"ambiguous format: the first record's fields {keys} fit {' and '.join(whole)} alike; "
                        "name the format (--format)", file)
    if candidates:
        kind = "ambiguous format" if len(candidates) > 1 else "unknown format"
        raise DataError(f"{kind}: the first record has fields {keys}, and no format reads them all: "
                        f"{_near(formats, candidates, record)}; see helpers/data_formats.py for each format's "
                        "fields", file)
    known = ", ".join(formats)
    raise DataError(f"unknown format: the first record has fields {keys}, which match none of the known formats "
                    f"({known}); see helpers/data_formats.py for their fields", file)
