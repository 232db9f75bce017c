"""Bad rows left out instead of refusing a file: where each one was and why, counted by reason.

A Skipped either lists every bad row ({file, line or index, field, reason}: skipped_rows.jsonl, written beside a
converted file) or, made with keep=False, only counts them by reason and keeps the first few places of each, so
that a whole-file check of any size holds no more than that in memory.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from helpers.errors import DataError

SHOWN = 5  # places shown per reason, and in a summary
_PLURAL = {"line": "lines", "index": "indexes"}


@dataclass
class Skipped:
    """Rows left out instead of refusing the file: where each one was and why (skipped_rows.jsonl)."""

    rows: list[dict] = field(default_factory=list)  # every bad row (stays empty with keep=False)
    keep: bool = True  # False: only the counts by reason and the first places of each are kept
    counts: Counter = field(default_factory=Counter)  # reason (numbers read as N) → rows
    places: dict[str, list[str]] = field(default_factory=dict)  # reason → its first SHOWN places ("line 17")
    first: DataError | None = None  # the first bad row's error, as the file would have been refused with it
    total: int = 0

    def add(self, place: str, error: DataError) -> None:
        """Record one bad row: its file, line (or index), field and reason."""
        kind, _, number = place.partition(" ")
        entry = {"file": str(error.file) if error.file else None, kind: int(number), "field": error.field,
                 "reason": error.problem}
        if error.row is not None and str(error.row) != place:
            entry["row"] = str(error.row)
        if self.keep:
            self.rows.append(entry)
        reason = re.sub(r"\d+", "N", (f"field {error.field!r}: " if error.field else "") + error.problem)
        self.counts[reason] += 1
        shown = self.places.setdefault(reason, [])
        if len(shown) < SHOWN:
            shown.append(place)
        if self.first is None:
            self.first = error if error.row is not None else DataError(error.problem, error.file, place, error.field)
        self.total += 1

    def __len__(self) -> int:
        return self.total

    def reasons(self) -> Counter:
        """How many rows each kind of problem left out (numbers in the reason read as N)."""
        return Counter(self.counts)

    def summary(self, shown: int = SHOWN) -> str:
        """One line: how many rows, the commonest reasons, and where the first few are."""
        if not self.total:
            return "no bad rows skipped"
        reasons = "; ".join(f"{n} × {reason}" for reason, n in self.counts.most_common(3))
        more = f"; and {len(self.counts) - 3} other reasons" if len(self.counts) > 3 else ""
        firsts = sorted((place for places in self.places.values() for place in places), key=_position)[:shown]
        return (f"skipped {self.total} bad row{'s' if self.total != 1 else ''}: {reasons}{more}; "
                f"first at {', '.join(firsts)}")

    def by_reason(self, shown: int = SHOWN) -> list[str]:
        """One line per reason, commonest first: how many rows, and the first few places ("…" when there are more)."""
        lines = []
        for reason, n in self.counts.most_common():
            places = self.places[reason][:shown]
            kind = places[0].partition(" ")[0]
            numbers = ", ".join(place.partition(" ")[2] for place in places) + (", …" if n > shown else "")
            lines.append(f"  {n:,} × {reason} (at {kind if len(places) == 1 else _PLURAL[kind]} {numbers})")
        return lines


def _position(place: str) -> int:
    """"line 17" → 17, to put places of several reasons back in file order."""
    return int(place.partition(" ")[2])
