"""One line per unit of work while a long cell runs (a sweep's run, a loss variant): which one of how many, its
name, the seconds it took and a headline figure or two."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

# The figures a progress line shows, in this order, with the short label it gives each.
HEADLINES = {"support_rate": "held-out support_rate", "generated_support_rate": "judge support"}


def progress_line(done: int, total: int, name: str, seconds: float, figures: Mapping[str, float] | None = None,
                  note: str = "") -> str:
    """"run 3/6: ratio 0.5 seed 1: 52 s, held-out support_rate 0.71, judge support 0.69" from its parts."""
    shown = [f"{HEADLINES.get(key, key)} {value:.2f}" for key, value in (figures or {}).items()
             if value is not None and not (isinstance(value, float) and math.isnan(value))]
    return f"run {done}/{total}: {name}: {seconds:.0f} s" + "".join(f", {part}" for part in shown) + \
        (f" ({note})" if note else "")


def headline_figures(metrics: Mapping[str, float]) -> dict[str, float]:
    """The HEADLINES a stage's metrics hold, in HEADLINES' order."""
    return {key: metrics[key] for key in HEADLINES if key in metrics}


class Lap:
    """Seconds since the last call (or since it was made): the time one unit of work took."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock, self.last = clock, clock()

    def __call__(self) -> float:
        """The seconds since the last lap, and start the next one."""
        now = self.clock()
        seconds, self.last = now - self.last, now
        return seconds
