"""The library signatures and config fields the helpers rely on. An upgrade that renames one fails here, by name."""

from __future__ import annotations

import dataclasses
import inspect

import pytest


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _params(func) -> set[str]:
    return set(inspect.signature(func).parameters)


def _missing(wanted: set[str], have: set[str]) -> list[str]:
    return sorted(wanted - have)


def test_dpo_config_fields():
    from trl import DPOConfig

    missing = _missing({"beta", "loss_type", "loss_weights", "max_length", "precompute_ref_log_probs",
                        "activation_checkpointing", "use_cpu", "bf16", "fp16", "disable_tqdm", "report_to",
                        "logging_steps", "save_strategy", "data_seed", "optim", "label_smoothing"}, _fields(DPOConfig))
    assert not missing, f"trl.DPOConfig lost: {missing}"


def test_sft_config_fields():
    from trl import SFTConfig

    missing = _missing({"max_length", "packing", "completion_only_loss", "num_train_epochs", "learning_rate"},
                       _fields(SFTConfig))
    assert not missing, f"trl.SFTConfig lost: {missing}"


@pytest.mark.parametrize("trainer", ["DPOTrainer", "SFTTrainer"])
def test_trainer_arguments(trainer):
    import trl

    missing = _missing({"model", "args", "train_dataset", "processing_class", "peft_config"},
                       _params(getattr(trl, trainer).__init__))
    assert not missing, f"trl.{trainer}.__init__ lost: {missing}"


def test_dpo_logs_the_metrics_the_notebooks_plot():
    import trl.trainer.dpo_trainer as dpo

    source = inspect.getsource(dpo)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert f'"{key}"' in source, f"DPOTrainer no longer logs {key}"


def test_lora_config_fields():
    from peft import LoraConfig

    missing = _missing({"r", "lora_alpha", "lora_dropout", "target_modules", "bias", "task_type"}, _fields(LoraConfig))
    assert not missing, f"peft.LoraConfig lost: {missing}"


def test_peft_model_methods():
    from peft import LoraModel, PeftModel

    for name in ("from_pretrained", "disable_adapter", "save_pretrained", "get_base_model"):
        assert hasattr(PeftModel, name), f"peft.PeftModel lost {name}"
    for name in ("merge_and_unload", "unload"):  # PeftModel forwards these to its LoraModel
        assert hasattr(LoraModel, name), f"peft.LoraModel lost {name}"


def test_transformers_entry_points():
    from transformers import BitsAndBytesConfig, PreTrainedTokenizerBase, TrainingArguments

    assert not _missing({"tokenize", "add_generation_prompt"}, _params(PreTrainedTokenizerBase.apply_chat_template)), \
        "apply_chat_template lost tokenize/add_generation_prompt"
    assert not _missing({"load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                         "bnb_4bit_compute_dtype"}, _params(BitsAndBytesConfig.__init__)), "BitsAndBytesConfig changed"
    assert "activation_checkpointing" in _fields(TrainingArguments), "TrainingArguments.activation_checkpointing gone"


def test_trainer_callbacks_the_helpers_remove():
    from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: F401
