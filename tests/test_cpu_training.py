"""The two CPU training speed-ups (helpers.cpu_training): what each changes while a trainer runs, that each is put
back afterwards, that a switch turns each off, that the loss they give is the loss without them, and that a GPU never
gets them."""

from __future__ import annotations

import pytest

from helpers import data
from helpers.config import load_profile
from helpers.cpu_training import (EAGER_SWITCH, HEAD_SWITCH, cpu_training_kernels, eager_attention, labelled_head,
                                  training_speedups)


def test_trl_still_has_the_hook_the_labelled_head_turns():
    import trl.trainer.utils as trl_utils

    assert callable(getattr(trl_utils, "_use_triton", None)), "TRL moved _use_triton: the labelled head is a no-op"


def test_both_on_a_cpu_none_on_a_gpu(monkeypatch):
    monkeypatch.delenv(EAGER_SWITCH, raising=False)
    monkeypatch.delenv(HEAD_SWITCH, raising=False)
    assert cpu_training_kernels("cpu") == {"eager_attention": True, "labelled_head": True}
    assert cpu_training_kernels("cuda") == {"eager_attention": False, "labelled_head": False}
    monkeypatch.setenv(EAGER_SWITCH, "off")
    monkeypatch.setenv(HEAD_SWITCH, "0")
    assert cpu_training_kernels("cpu") == {"eager_attention": False, "labelled_head": False}


def test_eager_attention_is_put_back(tiny):
    model, _ = tiny
    assert model.config._attn_implementation == "sdpa"
    with eager_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"


def _head_rows(monkeypatch, model, tokenizer, profile, scratch) -> tuple[list[int], list[int], float]:
    """Rows the fused LM head projected in each call of a two-step SFT run, the labelled positions of those calls,
    and the first logged loss."""
    import torch
    import trl.trainer.utils as trl_utils

    from helpers.training import sft_config, run_trainer
    from trl import SFTTrainer

    projected: list[int] = []
    labelled: list[int] = []
    real = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, weight, bias, targets, *rest):
        projected.append(hidden.shape[0])
        return real(hidden, weight, bias, targets, *rest)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    examples = data.make_sft_examples(data.load_homework()[:8], profile.system_prompt)
    torch.manual_seed(0)
    trainer = SFTTrainer(model=model, args=sft_config(profile, scratch, max_steps=2), train_dataset=examples,
                         processing_class=tokenizer)
    for batch in trainer.get_train_dataloader():
        labelled.append(int((batch["labels"][:, 1:] != -100).sum()))
        break
    result = run_trainer(trainer)
    return projected, labelled, [e["loss"] for e in result.log_history if "loss" in e][0]


def test_the_labelled_head_projects_only_the_answers_tokens_and_gives_the_same_loss(tiny_path, tmp_path,
                                                                                     monkeypatch):
    from helpers.tiny_model import load_tiny

    profile = load_profile("tiny")
    monkeypatch.setenv(EAGER_SWITCH, "off")  # this test is about the head alone
    monkeypatch.setenv(HEAD_SWITCH, "off")
    everything, _, loss_off = _head_rows(monkeypatch, *load_tiny(tiny_path), profile, tmp_path / "off")
    monkeypatch.setenv(HEAD_SWITCH, "on")
    labelled_only, labels, loss_on = _head_rows(monkeypatch, *load_tiny(tiny_path), profile, tmp_path / "on")
    assert labelled_only[0] == labels[0] < everything[0]  # the first batch: its labelled tokens, not every position
    assert loss_on == pytest.approx(loss_off, rel=1e-5)


def test_the_switches_change_the_sft_cache_and_are_recorded(monkeypatch):
    from helpers.pipeline import environment_facts, sft_cache_dir, sft_settings

    profile = load_profile("tiny")
    rows = data.load_homework()[:4]
    monkeypatch.delenv(EAGER_SWITCH, raising=False)
    monkeypatch.delenv(HEAD_SWITCH, raising=False)
    on = sft_cache_dir(sft_settings(profile, rows, 0))
    assert environment_facts(profile)["training_kernels"] == {"eager_attention": True, "labelled_head": True}
    monkeypatch.setenv(EAGER_SWITCH, "off")
    assert sft_cache_dir(sft_settings(profile, rows, 0)) != on  # another numerics: another SFT stage


def test_training_speedups_put_everything_back(tiny, monkeypatch):
    import trl.trainer.utils as trl_utils

    monkeypatch.delenv(EAGER_SWITCH, raising=False)
    monkeypatch.delenv(HEAD_SWITCH, raising=False)
    model, _ = tiny
    hook = trl_utils._use_triton
    with training_speedups(model) as used:
        assert used == {"eager_attention": True, "labelled_head": True}
        assert trl_utils._use_triton is not hook and model.config._attn_implementation == "eager"
    assert trl_utils._use_triton is hook and model.config._attn_implementation == "sdpa"
    with labelled_head():
        import torch

        assert trl_utils._use_triton(torch.device("cpu"))
    assert trl_utils._use_triton is hook
