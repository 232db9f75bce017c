"""The measurements of the stages DPO starts from, kept once per model and data set: the untrained model's and the
(cached) SFT model's greedy answers and log-probs on the held-out and probe rows do not change between runs that
only change DPO (ratio, β, learning rate, loss, its LoRA), so a rerun reads them instead of loading a model and
generating again. Everything that could change them is in the cache key: the weights (and the SFT adapter's files),
the precision, the prompts, the rows and the library versions. `DPO_MEASURE_CACHE=off` measures every stage in every
run and keeps nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import torch

from helpers.config import CACHE_DIR, Profile
from helpers.files import read_json, write_json_atomic
from helpers.hardware import cpu_bf16_for, precision_flags, precision_name
from helpers.models import model_source

VERSION = 1
FILE = "measured.json"
SWITCH = "DPO_MEASURE_CACHE"  # "off": measure the base and SFT stages in every run


def cache_on() -> bool:
    """Whether stage measurements are read from and kept in the cache (DPO_MEASURE_CACHE is not "off")."""
    return os.environ.get(SWITCH, "").strip().lower() not in ("off", "0", "no", "false")


def weights_fingerprint(source: str) -> dict:
    """What identifies the weights: a hub id as it is; a local folder by its files' names, sizes and times."""
    folder = Path(source)
    if not folder.is_dir():
        return {"hub_id": source}
    return {"folder": str(folder.resolve()),
            "files": sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.iterdir() if p.is_file())}


def stage_settings(profile: Profile, inputs, sft_dir: Path | None = None) -> dict:
    """Everything a start stage's measurement depends on (its hash names the cache folder): the base model's, or with
    sft_dir the SFT model's from that cache folder."""
    import transformers

    rows = {name: getattr(inputs, name) for name in ("eval_rows", "probe_rows", "test_rows")}
    return {"version": VERSION, "weights": weights_fingerprint(model_source(profile)),
            "load_in_4bit": profile.load_in_4bit,
            "precision": precision_name(precision_flags(cpu_bf16_for(profile.cpu_bf16))),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "system_prompt": profile.system_prompt, "max_new_tokens": profile.max_new_tokens,
            "gen_batch_size": profile.gen_batch_size,
            "rows": hashlib.sha256(json.dumps(rows, ensure_ascii=False, sort_keys=True).encode()).hexdigest(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "sft": weights_fingerprint(str(sft_dir)) if sft_dir is not None else None}


def stage_cache_file(settings: dict, cache_dir: Path | None = None) -> Path:
    """The file holding one stage's measurement of one setting."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir or CACHE_DIR) / f"measured-{key}" / FILE


def read_stage_outputs(path: Path, settings: dict) -> dict | None:
    """The cached outputs (answers, ended, held-out and probe tables) if they were saved for exactly these settings."""
    if not cache_on() or not path.is_file():
        return None
    try:
        saved = read_json(path)
    except (OSError, ValueError):  # a damaged file is measured again and rewritten
        return None
    if saved.get("settings") != json.loads(json.dumps(settings, default=str)):
        return None
    return {"answers": saved["answers"], "ended": saved["ended"],
            "logps": pd.DataFrame(saved["logps"]), "probes": pd.DataFrame(saved["probes"])}


def save_stage_outputs(path: Path, settings: dict, outputs: dict) -> None:
    """Keep a stage's outputs for the next run (atomically; nothing when the cache is switched off)."""
    if not cache_on():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"settings": json.loads(json.dumps(settings, default=str)),
                             "answers": outputs["answers"], "ended": outputs["ended"],
                             "logps": outputs["logps"].to_dict("list"), "probes": outputs["probes"].to_dict("list")})
