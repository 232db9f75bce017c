"""Exporting a run: fold the LoRA adapters into the base weights (a 4-bit run's: the dequantized NF4 weights it trained
against), save a standalone model (safetensors, tokenizer, chat template, and the notice its base weights' terms
require), check that the saved folder gives the run's own greedy answers, and optionally push it to the hub."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.errors import UserError
from helpers.files import read_json, write_json_atomic
from helpers.hardware import CPU_AUTOCAST
from helpers.models import is_offline, load_tokenizer, model_source
from helpers.runs import replace_dir

FOUR_BIT_NOTE = ("a 4-bit run trained its adapter against the NF4 weights, so export loads the base in 4 bit as the "
                 "run did, dequantizes it to the run's 16-bit type and merges the adapter into that: the exported "
                 "model is the trained one, about 4x the size of the 4-bit weights.")
GENERATION_CHECK_LIMIT = 1.0e9  # parameters: above this, greedy answers on a CPU would take hours (not checked there)


def run_profile(run_dir: Path):
    """The profile a saved run trained with (its homework's, with the model it really used)."""
    from helpers.runs import RunConfig, resolve_profile

    return resolve_profile(RunConfig(**read_json(Path(run_dir) / "config.json")), check_hardware=False)


def recorded_precision(run_dir: Path) -> str | None:
    """What a saved run computed in, as its metrics.json recorded it ("bf16", "fp16", "fp32 (CPU)", …)."""
    return read_json(Path(run_dir) / "metrics.json").get("environment", {}).get("precision")


def run_dtype(run_dir: Path, profile) -> torch.dtype:
    """The 16-bit (or fp32) type a run computed in: what its metrics.json recorded, else this machine's choice."""
    from helpers.hardware import pick_dtype

    recorded = recorded_precision(run_dir)
    named = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32 (CPU)": torch.float32,
             CPU_AUTOCAST: torch.float32}  # fp32 weights, bf16 products
    if recorded in named:
        return named[recorded]
    return pick_dtype() if profile.load_in_4bit else torch.float32


def export_memory(parameters: int, dtype: torch.dtype, gpu_free_gib: float | None, ram_gib: float | None) -> str:
    """Where the merged model fits ("cuda" or "cpu"), or a UserError that says what it needs and what there is."""
    need = parameters * torch.finfo(dtype).bits / 8 / 2**30 + 0.5  # the merged weights, plus room to work
    if gpu_free_gib is not None and gpu_free_gib >= need:
        return "cuda"
    if ram_gib is None or ram_gib >= need:
        return "cpu"
    gpu = f"{gpu_free_gib:.1f} GiB free on the GPU and " if gpu_free_gib is not None else ""
    raise UserError(f"exporting merges the adapter into a {str(dtype).removeprefix('torch.')} copy of the "
                    f"{parameters / 1e9:.1f}B-parameter base: about {need:.1f} GiB, and this machine has {gpu}"
                    f"{ram_gib:.1f} GiB of RAM available (free Colab: 14.7 GiB on a T4, 12.7 GiB of RAM). The run's "
                    "adapter folder is the trained part: load it on top of the 4-bit base (PeftModel.from_pretrained), "
                    "or export on a machine with more memory")


def load_run_model(run_dir: Path):
    """The run's trained network as one model with its adapters on top, for merging: base weights (+ the SFT adapter
    folded in) + the DPO adapter; a 4-bit run's base dequantized from the NF4 weights it trained against."""
    from peft import PeftModel

    from helpers.hardware import gpu_memory_gib, ram_gib
    from helpers.memory import parameter_count

    run_dir = Path(run_dir)
    if not (run_dir / "adapter" / "adapter_config.json").exists():
        raise UserError(f"{run_dir} has no saved adapter; export needs a complete run folder from `run` or notebook 04")
    profile = run_profile(run_dir)
    if profile.run_sft and not profile.load_in_4bit and not (run_dir / "sft_adapter").exists():
        raise UserError(f"{run_dir} has no sft_adapter/: its DPO adapter was trained on the SFT model, so without the "
                        "SFT adapter the export would be a different model; save the run with save_run(..., sft_dir=...)")
    dtype = run_dtype(run_dir, profile)
    parameters = parameter_count(profile)
    gpu = gpu_memory_gib()
    device = export_memory(parameters, dtype, gpu[0] if gpu else None, ram_gib()) if parameters else "cpu"
    if profile.load_in_4bit:
        from helpers.models import keep_4bit_trainable_on_cpu, quantization_config

        model = AutoModelForCausalLM.from_pretrained(
            model_source(profile), dtype=dtype, device_map={"": 0 if device == "cuda" else "cpu"},
            quantization_config=quantization_config(profile, dtype), trust_remote_code=profile.trust_remote_code)
        keep_4bit_trainable_on_cpu(model)
        model = model.dequantize(dtype=dtype)  # the values the 4-bit layers computed with
    else:
        model = AutoModelForCausalLM.from_pretrained(model_source(profile), dtype=dtype,
                                                     trust_remote_code=profile.trust_remote_code)
    if (run_dir / "sft_adapter").exists():
        model = PeftModel.from_pretrained(model, str(run_dir / "sft_adapter")).merge_and_unload()
    model = PeftModel.from_pretrained(model, str(run_dir / "adapter"))
    return model.eval(), load_tokenizer(profile), profile


def write_weights_notice(profile, folder: Path) -> list[str]:
    """Into a model trained from a profile's weights: the NOTICE their terms require and the licence files their
    package installs (Gemma: its Terms of Use); the names written, none for weights that need no notice."""
    if not profile.gguf_weights:
        return []
    from helpers.gguf_weights import GGUF_WEIGHTS
    from helpers.turn_format import write_notice

    return write_notice(GGUF_WEIGHTS[profile.gguf_weights], folder, trained=True)


def check_export_dir(out_dir: Path, run_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a folder unless it is empty, an earlier export of this same run, or overwrite is given."""
    out_dir = Path(out_dir)
    if overwrite or not out_dir.exists() or not any(out_dir.iterdir()):
        return
    earlier = out_dir / "export.json"
    if earlier.exists() and Path(read_json(earlier).get("run", "")).resolve() == Path(run_dir).resolve():
        return  # the same run exported again: nothing is lost, the run folder remains
    raise UserError(f"{out_dir} exists and is not an export of {run_dir}; choose another --out or add --overwrite")


def export_run(run_dir: Path, out_dir: Path, push_to_hub: str | None = None, echo=print,
               overwrite: bool = False) -> dict:
    """Merge, save, free, reload the saved folder with AutoModelForCausalLM and answer the run's own test prompts:
    the exported model must give the run's greedy answers (one copy of the weights alive at a time)."""
    import gc

    from helpers.generation import generate_answers

    check_export_dir(out_dir, run_dir, overwrite)
    if push_to_hub:
        check_can_push()  # before minutes of merging, not after
    adapter_model, tokenizer, profile = load_run_model(run_dir)
    if profile.load_in_4bit:
        echo(FOUR_BIT_NOTE)
    merged = adapter_model.merge_and_unload()
    dtype, device, parameters = merged.dtype, next(merged.parameters()).device, merged.num_parameters()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    merged.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)  # includes chat_template.jinja
    notice = write_weights_notice(profile, staging)  # travels with the model: into the folder, and to the hub
    replace_dir(staging, out_dir)
    del adapter_model, merged
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    expected = read_json(Path(run_dir) / "answers.json")  # the run's own prompts and its DPO model's answers
    report = {"run": str(Path(run_dir).resolve()), "model_dir": str(out_dir), "profile": profile.name,
              "dtype": str(dtype).removeprefix("torch."), "prompts": len(expected), "notice": notice}
    if device.type == "cpu" and parameters > GENERATION_CHECK_LIMIT:
        report.update(same_greedy_answers=None, check="not run: greedy answers of a model this size on a CPU take "
                                                      "hours; reload the folder on a GPU to compare")
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=dtype, device_map={"": device})
        answers = generate_answers(reloaded, AutoTokenizer.from_pretrained(out_dir), [a["prompt"] for a in expected],
                                   profile.system_prompt, profile.max_new_tokens, batch_size=profile.gen_batch_size,
                                   progress=False)
        same = sum(a == e["dpo"] for a, e in zip(answers, expected))
        report.update(same_greedy_answers=same == len(expected), same_answers=f"{same}/{len(expected)}")
    report["files"] = sorted(p.name for p in out_dir.iterdir())
    write_json_atomic(out_dir / "export.json", report)
    if push_to_hub:
        report["pushed_to"] = push_model(out_dir, push_to_hub)
    return report


def hub_token() -> str | None:
    """The hub token from HF_TOKEN or Colab's secrets; never printed, never saved."""
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        return userdata.get("HF_TOKEN")
    except Exception:  # not on Colab, or no such secret
        return None


def check_can_push() -> str:
    """The token to push with; a one-line error when offline or without a token."""
    if is_offline():
        raise UserError("cannot push: HF_HUB_OFFLINE=1 forbids network access; unset it on a machine that is online")
    token = hub_token()
    if not token:
        raise UserError("cannot push: no token; set HF_TOKEN (or add it to Colab's secrets as HF_TOKEN)")
    return token


def push_model(model_dir: Path, repo_id: str) -> str:
    """Upload a saved model folder to the hub; a clear one-line error without network or token."""
    token = check_can_push()
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True, private=True)
        api.upload_folder(folder_path=str(model_dir), repo_id=repo_id)
    except Exception as error:  # network or permission: say which, without the token
        raise UserError(f"cannot push to {repo_id}: {type(error).__name__}: {str(error).replace(token, '***')[:200]}")
    return f"https://huggingface.co/{repo_id}"
