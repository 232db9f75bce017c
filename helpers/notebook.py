"""The one call at the top of every notebook and command: quiet logs, seeds, device and profile."""

from __future__ import annotations

import logging
import os
import random
import warnings
from dataclasses import dataclass

# bitsandbytes prints a CPU-kernel warning on every import of peft/trl; silence it before they load.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
# tqdm.auto warns (with this machine's path) when ipywidgets is missing; the helpers turn progress bars off anyway.
warnings.filterwarnings("ignore", message="IProgress not found")

from typing import TYPE_CHECKING  # noqa: E402

from helpers.config import Profile, load_profile  # noqa: E402
from helpers.hardware import has_gpu, pick_dtype, pin_one_gpu  # noqa: E402

if TYPE_CHECKING:
    import torch


@dataclass
class Session:
    """What a notebook needs to know about where it runs."""

    profile: Profile
    device: str
    dtype: torch.dtype
    seed: int

    def _repr_markdown_(self) -> str:
        from helpers.memory import memory_note

        return (f"**profile** `{self.profile.name}` ({self.profile.model_name}) · **device** `{self.device}` · "
                f"**dtype** `{str(self.dtype).removeprefix('torch.')}` · **seed** {self.seed}  \n"
                f"memory: {memory_note(self.profile)}")


def quiet_logs() -> None:
    """Keep notebook output to what teaches: no progress-bar noise from saving, no repeated library warnings."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    for name in ("bitsandbytes", "kernels", "peft", "trl", "accelerate", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|trl|peft)\..*")
    warnings.filterwarnings("ignore", message=".*TRLExperimentalWarning.*")


def set_threads(threads: int | None = None) -> int:
    """torch's CPU threads, chosen deliberately: `threads`, else DPO_THREADS, else torch's default (one per core).

    Measured on 2 idle cores (bench): two threads make a tiny SFT step 1.5x and a DPO step 2.1x faster than one. On a
    machine busy with other work, two threads that fight for the cores were 4-8x slower than one: set DPO_THREADS=1.
    """
    import torch

    wanted = threads or int(os.environ.get("DPO_THREADS", "0") or 0)
    if wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPU)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def show_user_errors_as_one_line() -> None:
    """In a notebook, a UserError (a bad parameter, a missing file) shows as one line "error: …", not a traceback.

    The cell still fails, so papermill stops there and nothing after it runs.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from helpers.errors import UserError

    def one_line(shell, etype, value, tb, tb_offset=None) -> list[str]:
        lines = [f"error: {value}"]
        shell._showtraceback(etype, value, lines)  # IPython leaves showing it to the handler
        return lines

    shell.set_custom_exc((UserError,), one_line)


def setup_notebook(profile: str | None = None, seed: int | None = 0, homework: str | None = None) -> Session:
    """Quiet logs, seed everything, pick the device and the profile the parameters cell asks for ("auto": the real
    small chat model smollm2-135m on a CPU, a larger one on a GPU, DPO_PROFILE if set; with a homework: the course's model unless another is named, and its seed)."""
    quiet_logs()
    show_user_errors_as_one_line()
    import pandas as pd

    pd.set_option("display.max_colwidth", None)  # whole answers in tables, never cut with "…"
    pin_one_gpu()  # before anything starts CUDA: Kaggle's "GPU T4 x2" shows two cards to one process
    if homework:
        from helpers.runs import notebook_config, resolve_profile

        config = notebook_config(homework, profile, seed=seed)
        chosen, seed = resolve_profile(config, check_hardware=False), config.seed
    else:
        chosen, seed = load_profile(profile), 0 if seed is None else seed
    set_seed(seed)
    set_threads()
    device = "cuda" if has_gpu() else "cpu"
    return Session(profile=chosen, device=device, dtype=pick_dtype(device), seed=seed)
