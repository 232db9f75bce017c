"""Named moments at which the crash test (tests/test_resume.py) kills a run, as a dead laptop would.

With DPO_KILL_AT=NAME or NAME:N in the environment, the process sends itself SIGKILL the N-th time (default: the
first) it reaches the point NAME. Without it (always, outside that test) every point is one dictionary lookup.
The points: sft-step, dpo-step (after an optimizer step), sft-checkpoint, dpo-checkpoint (inside the Trainer's
checkpoint write: weights, optimizer and scheduler written, RNG state and trainer_state.json not yet), sft-cache,
tiny-cache (cache folder half-written), measure (between the log-probs and the answers of a stage), save-run
(answers and logs written, adapter, metrics.json and COMPLETE not yet).
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

ENV = "DPO_KILL_AT"
_visits: Counter = Counter()


def kill_point(name: str) -> None:
    """Die here, with no chance to clean up, if DPO_KILL_AT names this point and this is its N-th visit."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _visits[name] += 1
    if _visits[name] == int(nth or 1):
        sys.stdout.flush()
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def arm_trainer(trainer, stage: str) -> None:
    """With DPO_KILL_AT set, add the points {stage}-step (after each optimizer step) and {stage}-checkpoint (inside
    each checkpoint write, before its RNG state) to a Trainer; without it, leave the Trainer untouched."""
    if not os.environ.get(ENV):
        return
    from transformers import TrainerCallback

    class StepPoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            kill_point(f"{stage}-step")

    trainer.add_callback(StepPoint())
    save_rng_state = trainer._save_rng_state  # the Trainer's last write but one (transformers 5.x)

    def save_rng_state_or_die(output_dir: str) -> None:
        kill_point(f"{stage}-checkpoint")
        save_rng_state(output_dir)

    trainer._save_rng_state = save_rng_state_or_die
