"""The bench's no-gradient passes, each beside the path it replaced: the held-out rows' log-probs (CPU bf16 autocast
against fp32) and DPO's reference pass (a larger batch against the training batch)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from unittest import mock

from helpers.bench_runs import timed
from helpers.hardware import AUTOCAST_MARK


@contextlib.contextmanager
def without_autocast(model):
    """The model's CPU bf16 autocast off for a while (the path it replaced, for a side-by-side figure)."""
    setattr(model, AUTOCAST_MARK, False)
    try:
        yield model
    finally:
        setattr(model, AUTOCAST_MARK, True)


def measuring(profile, model, tokenizer, rows: list[dict]) -> dict:
    """Seconds to score the held-out rows' two answers (log-probs), with the profile's precision and, where it uses
    CPU bf16 autocast, in fp32; and how far the per-row support-minus-oppose gaps moved."""
    from helpers.evaluation import stance_logps

    table, seconds = timed(stance_logps, model, tokenizer, rows, profile.system_prompt)
    report = {"rows": len(rows), "seconds": round(seconds, 2)}
    if getattr(model, AUTOCAST_MARK, False):
        with without_autocast(model):
            fp32, fp32_seconds = timed(stance_logps, model, tokenizer, rows, profile.system_prompt)
        gap = (table.support_logp - table.oppose_logp) - (fp32.support_logp - fp32.oppose_logp)
        same_side = ((table.support_logp > table.oppose_logp) == (fp32.support_logp > fp32.oppose_logp)).mean()
        report.update(fp32_seconds=round(fp32_seconds, 2), speedup_bf16_vs_fp32=round(fp32_seconds / seconds, 2),
                      max_gap_change_nats=round(float(gap.abs().max()), 3), same_preferred_share=float(same_side))
    return report


def reference_pass(profile, start_model, tokenizer, rows: list[dict]) -> dict:
    """Seconds of DPO's precomputed reference pass over the training pairs (it runs when the trainer is built): in
    the batch a run uses and in the training batch (DPO_REF_BATCH, the path it replaced)."""
    from helpers import data
    from helpers.trainer_args import ref_batch_size
    from helpers.training import dpo_trainer, release_adapters

    seconds = {}
    for batch in (ref_batch_size(profile), profile.batch_size):
        # new pairs each time: TRL keeps the pass in a file named by the data set's fingerprint and would reuse it
        pairs = data.make_preference_pairs(rows, 1.0, system_prompt=profile.system_prompt)
        with mock.patch.dict(os.environ, {"DPO_REF_BATCH": str(batch)}), tempfile.TemporaryDirectory() as scratch:
            trainer, seconds[batch] = timed(dpo_trainer, start_model, tokenizer, pairs, profile, scratch)
            start_model = release_adapters(trainer.model)
    used, before = seconds[ref_batch_size(profile)], seconds[profile.batch_size]
    return {"pairs": len(pairs), "batch": ref_batch_size(profile), "training_batch": profile.batch_size,
            "seconds": round(used, 2), "training_batch_seconds": round(before, 2), "speedup": round(before / used, 2)}
