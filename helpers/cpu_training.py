"""Two speed-ups of a training step on a CPU, each with a switch; a GPU trains as before.

- Attention: transformers' eager attention while training, instead of torch's SDPA, whose CPU backward (a flash
  kernel) took about a quarter of a SmolLM2 step under bf16 autocast. The forward passes that measure and generate keep
  SDPA (generation is slower with eager). `DPO_CPU_EAGER_ATTENTION=off` keeps SDPA in training too.
- The LM head: TRL's trainers score tokens through a fused LM head that, on a device without Triton, projects every
  position (prompt and padding too) onto the whole vocabulary, and its backward does the same again. On a GPU it
  projects only the positions that carry a label (the answer's tokens). On a CPU this module makes it do the same
  (TRL's reason for scoring everything elsewhere is a compiler that wants fixed shapes, which a CPU run does not use).
  The per-token values are the same either way; `DPO_CPU_LABELLED_HEAD=off` scores every position.

bench (`python -m helpers bench`) measures each against the path it replaced."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from helpers.hardware import CPU_BF16_OFF, has_gpu

if TYPE_CHECKING:
    import torch

SWITCHES = {"eager_attention": "DPO_CPU_EAGER_ATTENTION", "labelled_head": "DPO_CPU_LABELLED_HEAD"}
EAGER_SWITCH, HEAD_SWITCH = SWITCHES.values()


def cpu_training_kernels(device: str | None = None) -> dict[str, bool]:
    """Which of the two speed-ups a training stage uses: on a CPU each unless its switch says off (the words that
    turn DPO_CPU_BF16 off), on a GPU none. device: "cpu" or "cuda"; None: where this machine trains."""
    on_cpu = (device or ("cuda" if has_gpu() else "cpu")) == "cpu"
    return {kernel: on_cpu and os.environ.get(switch, "").strip().lower() not in CPU_BF16_OFF
            for kernel, switch in SWITCHES.items()}


def _device(model: torch.nn.Module) -> str:
    return next(model.parameters()).device.type


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module):
    """Eager attention for a while (nothing unless the model uses SDPA); SDPA again afterwards."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if before != "sdpa" or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@contextlib.contextmanager
def labelled_head():
    """TRL's fused LM head projects only the positions with a label on a CPU too, for a while."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:  # another TRL: its head is left as it is (bench shows no gain then)
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


@contextlib.contextmanager
def training_speedups(model: torch.nn.Module):
    """The CPU speed-ups its switches leave on, around building a trainer (DPO's reference pass runs there) and
    training; nothing on a GPU."""
    kernels = cpu_training_kernels(_device(model))  # the model's own device, which a trainer uses
    with contextlib.ExitStack() as stack:
        if kernels["eager_attention"]:
            stack.enter_context(eager_attention(model))
        if kernels["labelled_head"]:
            stack.enter_context(labelled_head())
        yield kernels
