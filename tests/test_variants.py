"""The loss variants of notebook 08 (helpers.variants): each trains on the tiny SFT model, starts where its formula
says it must, moves only its LoRA adapter, and the comparison table holds what the notebook plots."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel

from helpers import data
from helpers.models import load_tokenizer
from helpers.pipeline import get_sft_model
from helpers.training import prepare_for_dpo
from helpers import pipeline, variants
from helpers.training import TrainResult
from helpers.variants import VARIANTS, resolved_settings, train_variant, unpair_for_kto, variant_table

# The first logged loss is computed before any update, while the new adapter is a no-op (policy == reference), so every
# log-ratio is 0. From each loss's formula at margin 0: DPO −log σ(0) = ln 2; IPO (0 − 1/(2β))² = 25 at β = 0.1;
# hinge max(0, 1 − 0) = 1; robust ((1−ε)·ln 2 − ε·ln 2)/(1 − 2ε) = ln 2; KTO 1 − σ(0) = 0.5 per row (KL estimate 0).
LOSS_AT_STEP_ONE = {"dpo": math.log(2), "ipo": 25.0, "hinge": 1.0, "robust": math.log(2),
                    "sigmoid_norm": math.log(2), "kto": 0.5}


@pytest.fixture(scope="module")
def start(tiny_profile):
    """The cached tiny SFT model with its adapter folded in, the tokenizer and 8 pairs (one batch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a ~1M-parameter model runs faster on one thread
    rows = data.load_homework()
    model, _, _ = get_sft_model(tiny_profile, rows, seed=0)
    pairs = data.make_preference_pairs(rows, 1.0, 8, system_prompt=tiny_profile.system_prompt)
    yield prepare_for_dpo(model, tiny_profile), load_tokenizer(tiny_profile), pairs
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(start, tiny_profile, tmp_path_factory):
    """Every variant trained for 2 steps from its own copy of the SFT model (kept side by side to compare them; the
    start model was never given to a trainer, so a plain deep copy runs its own weights)."""
    model, tokenizer, pairs = start
    results = {}
    for name in VARIANTS:
        results[name] = train_variant(name, copy.deepcopy(model), tokenizer, pairs, tiny_profile,
                                      tmp_path_factory.mktemp(name), num_epochs=1, max_steps=2)
    return results


@pytest.mark.parametrize("name", sorted(LOSS_AT_STEP_ONE))
def test_first_loss_is_the_formula_at_margin_zero(trained, name):
    first = next(entry for entry in trained[name].log_history if "loss" in entry)
    assert first["loss"] == pytest.approx(LOSS_AT_STEP_ONE[name], rel=1e-3)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_moves_only_a_new_adapter(start, trained, name):
    model, _, _ = start
    result = trained[name]
    assert result.steps == 2 and isinstance(result.model, PeftModel)
    assert all(math.isfinite(entry["loss"]) for entry in result.log_history if "loss" in entry)
    state = result.model.state_dict()
    base = {key.replace("base_model.model.", "").replace(".base_layer", ""): value
            for key, value in state.items() if "lora_" not in key}
    for key, value in model.state_dict().items():  # the SFT weights are untouched (the adapter was new)
        assert torch.equal(base[key], value), key
    lora_b = [value for key, value in state.items() if "lora_B" in key]
    assert lora_b and any(value.abs().sum() > 0 for value in lora_b)  # B starts at 0; two steps moved it


def test_orpo_is_reference_free_and_kto_estimates_the_kl(trained):
    orpo_keys = set().union(*trained["orpo"].log_history)
    assert "log_odds_ratio" in orpo_keys and not any(key.startswith("logps/ref") for key in orpo_keys)
    assert "kl" in set().union(*trained["kto"].log_history)


def test_pure_losses_drop_the_profiles_sft_term(tiny_profile):
    assert resolved_settings("default", tiny_profile)["loss_weights"] == list(tiny_profile.dpo_loss_weights)
    assert resolved_settings("default", tiny_profile)["loss_type"] == list(tiny_profile.dpo_loss_type)
    dpo = resolved_settings("dpo", tiny_profile)
    assert dpo["loss_type"] == ["sigmoid"] and dpo["loss_weights"] is None and dpo["beta"] == 0.1
    assert resolved_settings("robust", tiny_profile)["label_smoothing"] == 0.1
    table = variant_table(tiny_profile)
    assert list(table.index) == list(VARIANTS) and table.loc["orpo", "reference_free"]


def test_kto_rows_keep_a_pairs_two_answers_together():
    pairs = data.make_preference_pairs(data.load_homework(), 0.5, 6)
    rows = unpair_for_kto(pairs)
    assert len(rows) == 12 and rows["label"] == [True, False] * 6
    for i, pair in enumerate(pairs):
        assert rows[2 * i]["completion"] == pair["chosen"] and rows[2 * i + 1]["completion"] == pair["rejected"]
        assert rows[2 * i]["prompt"] == rows[2 * i + 1]["prompt"] == pair["prompt"]


def test_unknown_variant_lists_the_known_ones(start, tiny_profile, tmp_path):
    model, tokenizer, pairs = start
    with pytest.raises(KeyError, match="known: default, dpo"):
        train_variant("simpo", model, tokenizer, pairs, tiny_profile, tmp_path)


def test_compare_variants_prints_one_line_per_variant(monkeypatch):
    """Training and measuring replaced by stand-ins: the loop, its table and its progress lines, in milliseconds."""
    measured = {"dpo": 0.7, "orpo": 0.4}
    trained = []

    def fake_train(name, *args, **kwargs):
        trained.append(name)
        return TrainResult(model=name, seconds=1.5, steps=3)

    def fake_measure(model, *args, **kwargs):
        return SimpleNamespace(metrics={"support_rate": measured[model], "generated_support_rate": 0.5,
                                        "repetition": 0.3}, answers=[model])

    monkeypatch.setattr(variants, "train_variant", fake_train)
    monkeypatch.setattr(pipeline, "measure_stage", fake_measure)
    start = SimpleNamespace(metrics={"support_rate": 0.5, "generated_support_rate": 0.5, "repetition": 0.3},
                            answers=["start"])
    prepared = SimpleNamespace(stages={"base": start, "sft": start}, start_model=None, tokenizer=None, profile=None, inputs=None,
                               judge=None, release=lambda model: None)
    lines = []
    table = variants.compare_variants(prepared, pairs=None, names=["dpo", "orpo"], echo=lines.append)
    assert trained == ["dpo", "orpo"] and list(table.index) == ["sft (start)", "dpo", "orpo"]
    assert len(lines) == 2 and lines[0].startswith("run 1/2: dpo: ") and lines[1].startswith("run 2/2: orpo: ")
    assert "held-out support_rate 0.70, judge support 0.50" in lines[0] and "support_rate 0.40" in lines[1]
