"""Exporting a run: fold the LoRA adapters into the base weights, save a standalone model (safetensors, tokenizer,
chat template), check its greedy answers equal the adapter model's, and optionally push it to the hub."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.errors import UserError
from helpers.files import read_json, write_json_atomic
from helpers.models import is_offline, load_tokenizer, model_source
from helpers.runs import replace_dir

FOUR_BIT_NOTE = ("4-bit weights cannot take a merged adapter without rounding it away, so the base model is loaded "
                 "again in 16 bit on the CPU: about 2 bytes per parameter of RAM (~15 GB for a 7B model) and a few "
                 "minutes; the result is a 16-bit model, ~4x the size of the 4-bit one.")


def load_run_model(run_dir: Path):
    """The run's DPO model as base weights (+ the SFT adapter folded in) + the DPO adapter, on the CPU, for export."""
    from peft import PeftModel

    from helpers.runs import RunConfig, resolve_profile

    run_dir = Path(run_dir)
    if not (run_dir / "adapter" / "adapter_config.json").exists():
        raise UserError(f"{run_dir} has no saved adapter; export needs a complete run folder from `run` or notebook 04")
    profile = resolve_profile(RunConfig(**read_json(run_dir / "config.json")))
    if profile.run_sft and not profile.load_in_4bit and not (run_dir / "sft_adapter").exists():
        raise UserError(f"{run_dir} has no sft_adapter/: its DPO adapter was trained on the SFT model, so without the "
                        "SFT adapter the export would be a different model; save the run with save_run(..., sft_dir=...)")
    dtype = torch.float16 if profile.load_in_4bit else torch.float32  # see FOUR_BIT_NOTE
    model = AutoModelForCausalLM.from_pretrained(model_source(profile), dtype=dtype,
                                                 trust_remote_code=profile.trust_remote_code)
    if (run_dir / "sft_adapter").exists():
        model = PeftModel.from_pretrained(model, str(run_dir / "sft_adapter")).merge_and_unload()
    model = PeftModel.from_pretrained(model, str(run_dir / "adapter"))
    return model.eval(), load_tokenizer(profile), profile


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
    """Merge, save, reload with AutoModelForCausalLM and compare greedy answers; returns what was checked."""
    from helpers.data import load_test_prompts
    from helpers.generation import generate_answers

    check_export_dir(out_dir, run_dir, overwrite)
    if push_to_hub:
        check_can_push()  # before minutes of merging, not after
    adapter_model, tokenizer, profile = load_run_model(run_dir)
    if profile.load_in_4bit:
        echo(FOUR_BIT_NOTE)
    prompts = [row["prompt"] for row in load_test_prompts()]

    def answers(model) -> list[str]:
        return generate_answers(model, tokenizer, prompts, profile.system_prompt, profile.max_new_tokens,
                                batch_size=profile.gen_batch_size, progress=False)

    before = answers(adapter_model)
    merged = adapter_model.merge_and_unload()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    merged.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)  # includes chat_template.jinja
    replace_dir(staging, out_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=merged.dtype)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    after = answers(reloaded)
    report = {"run": str(Path(run_dir).resolve()), "model_dir": str(out_dir), "profile": profile.name,
              "same_greedy_answers": before == after, "prompts": len(prompts),
              "files": sorted(p.name for p in out_dir.iterdir())}
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
