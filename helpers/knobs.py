"""The run's knobs and their allowed ranges, in one place: the command line, RunConfig and the notebooks' parameters
all check a value here, before any data or model is loaded, and a bad one is one line naming the knob and its range.

Numbers are kept as they were written: `1` stays the int 1 and `1.0` the float 1.0, because the course's notebooks
name their result files with Python's own str() of the values a student typed (epoch-1_… versus epoch-1.0_…).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from helpers.errors import UserError


class KnobError(UserError, ValueError):
    """A knob set to a value outside its allowed range (or not a number at all)."""


@dataclass(frozen=True)
class Knob:
    """One knob: its name, its command-line flag, whether it must be whole, and its allowed range."""

    name: str
    whole: bool  # True: an integer
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is not allowed
    optional: bool = False  # True: None means "the profile's default" (or "all rows")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The allowed range in words: "a number greater than 0 and at most 100"."""
        kind = "a whole number" if self.whole else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'greater than' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"at most {self.high:g}")
        text = f"{kind} {' and '.join(parts)}".strip()
        return text + (" (or None for the default)" if self.optional else "")

    def fail(self, value) -> KnobError:
        return KnobError(f"{self.name} ({self.flag}) is {value!r}; allowed: {self.allowed()}")

    def check(self, value):
        """value itself when it is allowed, else a KnobError naming the knob and its range."""
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self.fail(value)
        if (self.whole and not isinstance(value, numbers.Integral)) or math.isnan(value) or math.isinf(value):
            raise self.fail(value)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            raise self.fail(value)
        return value

    def parse(self, text: str | None):
        """A command-line string as the number it spells (int when it has no point or exponent), checked."""
        if text is None or (self.optional and str(text).strip().lower() in ("", "none", "default")):
            return self.check(None) if self.optional else self.check(text)
        return self.check(parse_number(text, self))


def parse_number(text, knob: Knob | None = None):
    """"3" → 3, "0.1" → 0.1, "1e-4" → 0.0001; anything else is a KnobError (or ValueError without a knob)."""
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    try:
        return int(stripped) if re.fullmatch(r"[+-]?\d+", stripped) else float(stripped)
    except ValueError:
        if knob is None:
            raise
        raise knob.fail(text) from None


KNOBS: dict[str, Knob] = {k.name: k for k in [
    Knob("support_ratio", whole=False, low=0, high=1),
    Knob("data_size", whole=True, low=1, optional=True),
    Knob("num_epoch", whole=False, low=0, high=100, low_open=True),
    Knob("beta", whole=False, low=0, high=100, low_open=True, optional=True),
    Knob("learning_rate", whole=False, low=0, high=1, low_open=True, optional=True),
    Knob("seed", whole=True, low=0, high=2**32 - 1),
]}

STUDENT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def check_knobs(**values) -> dict:
    """Check every named knob (support_ratio=…, num_epoch=…); returns the values. Unknown names are a bug."""
    for name, value in values.items():
        KNOBS[name].check(value)
    return values


def check_student_id(student_id, homework: str) -> str:
    """A student id that can go into a file name: letters, digits, - and _, at most 32 characters."""
    if student_id is None or (isinstance(student_id, str) and not student_id.strip()):
        raise KnobError(f"student_id (--student-id) is missing; homework {homework} names its result file after it "
                        "(e.g. --student-id B12345678)")
    if not isinstance(student_id, str) or not STUDENT_ID.fullmatch(student_id):
        raise KnobError(f"student_id (--student-id) is {student_id!r}; allowed: 1 to 32 letters, digits, - or _")
    return student_id
