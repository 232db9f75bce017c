"""The GPU a run gets, and what follows from it: the precision (from the card's compute capability, never from
`torch.cuda.is_bf16_supported()`, which says True on a T4 because bf16 can be *emulated* there), one pinned GPU per
process, the device each data-parallel rank loads onto, and the cards the libraries cannot drive, refused in one line
before anything loads.

Light to import: torch only. The checks read torch.cuda's own answers, so a test can stub a T4, a P100 or an A100
below every function here (tests/test_gpu_path.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.errors import UserError

if TYPE_CHECKING:
    import torch

BF16_CAPABILITY = (8, 0)  # Ampere: bf16 tensor cores. Older cards (T4 7.5, V100 7.0, P100 6.0) only emulate bf16
T4_NOTE = "a free Colab or Kaggle T4"
SWITCH_RUNTIME = ("Colab: Runtime → Change runtime type → T4 GPU; Kaggle: Settings → Accelerator → GPU T4 x2 "
                  "(the project pins one of the two)")


def has_gpu() -> bool:
    """True when a CUDA device is usable."""
    import torch

    return torch.cuda.is_available()


def is_distributed() -> bool:
    """True inside a data-parallel launch (accelerate launch / torchrun set WORLD_SIZE above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device() -> int:
    """The GPU this process loads onto: its LOCAL_RANK under a data-parallel launch, else 0 (the one pinned GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def gpu_capability() -> tuple[int, int] | None:
    """(major, minor) compute capability of this process's GPU (7.5 for a T4), None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(local_device()))


def gpu_name() -> str | None:
    """The GPU's name as the driver gives it ("Tesla T4"), None without one."""
    import torch

    return torch.cuda.get_device_name(local_device()) if torch.cuda.is_available() else None


def has_fast_bf16(capability: tuple[int, int] | None) -> bool:
    """Whether bf16 runs on tensor cores: compute capability 8.0 (Ampere) or newer. A T4 emulates it, slowly."""
    return capability is not None and tuple(capability) >= BF16_CAPABILITY


def pick_dtype(device: str | None = None) -> torch.dtype:
    """Precision that follows the hardware: fp32 on CPU, bf16 from compute capability 8.0, fp16 below (T4, V100)."""
    import torch

    device = device or ("cuda" if has_gpu() else "cpu")
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if has_fast_bf16(gpu_capability()) else torch.float16


def precision_flags(cpu_bf16: bool = False) -> dict:
    """The trainers' mixed-precision flags: bf16 from capability 8.0, fp16 below (a T4); on a CPU fp32, or bf16
    autocast over fp32 weights when cpu_bf16 (see cpu_bf16_for)."""
    if not has_gpu():
        return {"bf16": cpu_bf16, "fp16": False, "use_cpu": True}
    bf16 = has_fast_bf16(gpu_capability())
    return {"bf16": bf16, "fp16": not bf16}


CPU_AUTOCAST = "bf16 autocast (CPU)"  # fp32 weights; matrix products in bf16 on the CPU's bf16 units


def precision_name(flags: dict | None = None) -> str:
    """"bf16", "fp16", "bf16 autocast (CPU)" or "fp32 (CPU)": what a run trains in, in a few words."""
    flags = precision_flags() if flags is None else flags
    if flags.get("use_cpu"):
        return CPU_AUTOCAST if flags.get("bf16") else "fp32 (CPU)"
    return "bf16" if flags.get("bf16") else "fp16" if flags.get("fp16") else "fp32 (CPU)"


# --- bf16 on a CPU ----------------------------------------------------------------------------------------------
# A CPU with bf16 matrix units (Intel AMX, AVX512-BF16; many laptops have neither) runs a model's matrix products
# several times faster under torch.autocast("cpu", bfloat16), the weights staying fp32. Without the units bf16 is
# emulated and slower, so it is used only where the flags say the units are there, and only for the profiles that ask
# (Profile.cpu_bf16: the real CPU models; the tiny model is too small to gain). DPO_CPU_BF16=off turns it off.

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CPU_BF16_OFF = ("0", "off", "false", "no")


def cpu_bf16_units(cpuinfo: str | None = None) -> str | None:
    """The CPU's bf16 matrix unit ("amx_bf16" or "avx512_bf16") from /proc/cpuinfo's flags, or None (elsewhere too)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return next((unit for unit in CPU_BF16_FLAGS if unit in flags), None)


def cpu_bf16_for(wanted: bool) -> bool:
    """Whether a run on this machine uses CPU bf16 autocast: the profile wants it, no GPU, the CPU has bf16 units,
    and DPO_CPU_BF16 does not turn it off."""
    if not wanted or os.environ.get("DPO_CPU_BF16", "").strip().lower() in CPU_BF16_OFF or has_gpu():
        return False
    return cpu_bf16_units() is not None


AUTOCAST_MARK = "cpu_bf16_autocast"  # set on a loaded model (helpers.models): measuring follows it (generation stays
# fp32: bf16's rounding flips near-tied greedy choices, so answers would depend on the batch's padding)


def autocast_for(model):
    """bf16 autocast on the CPU for a model loaded for it (the mark is seen through PEFT's wrappers), else nothing."""
    import contextlib

    import torch

    if getattr(model, AUTOCAST_MARK, False):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- one GPU per process ---------------------------------------------------------------------------------------


def visible_gpu_ids() -> list[str]:
    """The GPU ids CUDA_VISIBLE_DEVICES lets this process see ("0", "1", … when unset, by torch's count)."""
    import torch

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [part.strip() for part in listed.split(",") if part.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]  # counted through NVML: CUDA does not start here


def pin_one_gpu(echo=print) -> str | None:
    """In a single process that sees several GPUs (Kaggle's "GPU T4 x2"), keep only the first visible, before CUDA
    starts: Transformers' Trainer would otherwise wrap the model in nn.DataParallel, which TRL refuses. Says so in
    one line and returns the id kept; does nothing under a data-parallel launch, or with one GPU or none."""
    if is_distributed():
        return None
    ids = visible_gpu_ids()
    if len(ids) < 2:
        return None
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[0]
    echo(f"{len(ids)} GPUs are visible: this process uses GPU {ids[0]} only (TRL's trainers refuse nn.DataParallel); "
         "to train on all of them, `accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m helpers run …`")
    return ids[0]


def check_one_gpu() -> None:
    """Refuse, in one line, a single process that still sees several GPUs (CUDA started before pin_one_gpu ran)."""
    import torch

    if is_distributed() or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return
    raise UserError(f"{torch.cuda.device_count()} GPUs are visible to this process and CUDA started before one could "
                    "be pinned: restart the kernel (Run → Restart) and run the notebook from the top, or set "
                    "CUDA_VISIBLE_DEVICES=0 before Python starts")


# --- cards the libraries cannot drive ------------------------------------------------------------------------


def runs_on(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether code built for arch_list runs on a card: a cubin sm_XY runs on X.Z for Z >= Y, PTX compute_XY on any
    card from X.Y up (compiled when it loads)."""
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit():
            continue
        built = (int(digits[:-1]), int(digits[-1]))
        if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
            return True
        if kind == "compute" and built <= tuple(capability):
            return True
    return False


def bnb_min_capability(cuda_version: str | None) -> tuple[int, int]:
    """The oldest card bitsandbytes' wheel for this CUDA version has 4-bit kernels for: CUDA 13 builds start at 7.5,
    12.8 and 12.9 at 7.0, older ones at 6.0 (its installation guide and build script)."""
    major, minor = (int(part) for part in (cuda_version or "12.0").split(".")[:2])
    if major >= 13:
        return (7, 5)
    return (7, 0) if (major, minor) >= (12, 8) else (6, 0)


def check_gpu_for(load_in_4bit: bool, profile_name: str = "this profile") -> None:
    """Stop with one line, before any download, on a GPU that torch's build or bitsandbytes' 4-bit kernels cannot
    run (a Kaggle P100 with today's images); nothing on a CPU or a card that works."""
    import torch

    capability = gpu_capability()
    if capability is None:
        return
    card = f"{gpu_name()} (compute capability {capability[0]}.{capability[1]})"
    arch_list = torch.cuda.get_arch_list()
    if arch_list and not runs_on(capability, arch_list):
        raise UserError(f"this GPU, {card}, is older than this torch build supports ({', '.join(arch_list)}): "
                        f"switch to {T4_NOTE} ({SWITCH_RUNTIME})")
    needed = bnb_min_capability(torch.version.cuda)
    if load_in_4bit and capability < needed:
        raise UserError(f"{profile_name} loads its model in 4 bit, and bitsandbytes for CUDA {torch.version.cuda} has "
                        f"no 4-bit kernels for {card} (it needs {needed[0]}.{needed[1]} or newer): switch to "
                        f"{T4_NOTE} ({SWITCH_RUNTIME})")


def gpu_memory_gib() -> tuple[float, float] | None:
    """(free, total) GiB on this process's GPU, None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(local_device())
    return free / 2**30, total / 2**30


def ram_gib() -> float | None:
    """The memory available to new work on this machine, in GiB (Linux's MemAvailable), None where it is unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None
