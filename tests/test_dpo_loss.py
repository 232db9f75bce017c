"""The hand-written DPO loss (helpers.dpo_loss) against its formula and against TRL's DPOTrainer on a real batch."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import data
from helpers.dpo_loss import (METRICS, batch_logps, compare_with_trl, dpo_loss, first_batch, gradient_weights,
                              logp_gradients, make_dpo_trainer, sequence_logps, train_steps)
from helpers.models import load_tokenizer
from helpers.pipeline import get_sft_model
from helpers.training import prepare_for_dpo

EXACT = list(METRICS[:5])  # loss, rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies
LOGPS = list(METRICS[5:])  # summed log-probs (~−100 in float32, where one rounding step is ~1e-5)


@pytest.fixture(scope="module")
def run(tiny_profile, tmp_path_factory):
    """One DPOTrainer (pure sigmoid, new LoRA adapter) on the cached tiny SFT model, measured at step 0 and after a step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a ~1M-parameter model runs faster on one thread, much faster on a busy machine
    rows = data.load_homework()
    model, _, _ = get_sft_model(tiny_profile, rows, seed=0)  # the SFT cache is keyed by the unchanged profile
    profile = tiny_profile.replace(batch_size=4)
    pairs = data.make_preference_pairs(rows, 1.0, 16, system_prompt=profile.system_prompt)
    trainer = make_dpo_trainer(prepare_for_dpo(model, profile), load_tokenizer(profile), pairs, profile, beta=0.1,
                               output_dir=tmp_path_factory.mktemp("dpo"))
    batch = first_batch(trainer)
    step0 = compare_with_trl(trainer, batch)
    train_steps(trainer, steps=1, learning_rate=1e-3)  # policy != reference from here on
    yield {"trainer": trainer, "batch": batch, "step0": step0, "moved": compare_with_trl(trainer, batch)}
    torch.set_num_threads(threads)


def test_step_zero_is_ln2_with_zero_rewards(run):
    """A new LoRA adapter starts with B = 0: policy == reference, every log-ratio 0, loss −log σ(0) = ln 2."""
    assert run["trainer"].loss_types == ["sigmoid"]
    for column in ("by hand", "TRL"):
        assert run["step0"].loc["loss", column] == pytest.approx(math.log(2), abs=1e-7)
        for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
            assert run["step0"].loc[key, column] == 0.0


def test_hand_loss_and_rewards_equal_trl_on_a_fixed_batch(run):
    """After a step (policy != reference), loss, rewards, margins, accuracies match TRL's to 1e-5."""
    table = run["moved"]
    assert abs(table.loc["rewards/margins", "TRL"]) > 1e-3, "the policy did not move: the check would be trivial"
    assert (table.loc[EXACT, "abs diff"] < 1e-5).all(), table
    assert (table.loc[LOGPS, "abs diff"] / table.loc[LOGPS, "TRL"].abs() < 1e-6).all(), table


def test_reference_logps_equal_trl_per_pair(run):
    """Per pair, not only batch means: adapter-off log-probs against TRL's own compute_ref_log_probs."""
    trainer, batch = run["trainer"], run["batch"]
    with torch.no_grad():
        mine = batch_logps(trainer.model, batch)
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    torch.testing.assert_close(mine["ref_chosen_logps"], ref_chosen, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(mine["ref_rejected_logps"], ref_rejected, rtol=1e-6, atol=1e-5)
    assert not torch.allclose(mine["policy_chosen_logps"], ref_chosen), "policy and reference must differ here"


def test_sequence_logps_ignores_padding(run):
    trainer, batch = run["trainer"], run["batch"]
    pad = trainer.processing_class.pad_token_id
    longer = {"input_ids": torch.nn.functional.pad(batch["input_ids"], (0, 5), value=pad),
              "attention_mask": torch.nn.functional.pad(batch["attention_mask"], (0, 5)),
              "completion_mask": torch.nn.functional.pad(batch["completion_mask"], (0, 5))}
    with torch.no_grad():
        torch.testing.assert_close(sequence_logps(trainer.model, **longer), sequence_logps(trainer.model, **batch),
                                   rtol=1e-6, atol=1e-5)


def test_dpo_loss_matches_the_formula_on_handmade_tensors():
    beta = 0.5
    pc, pr, rc, rr = [-10.0, -20.0, -7.0], [-12.0, -18.0, -9.0], [-11.0, -19.0, -7.0], [-11.0, -19.0, -9.0]
    loss, chosen, rejected = dpo_loss(*(torch.tensor(v, dtype=torch.float64) for v in (pc, pr, rc, rr)), beta=beta)
    margins = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc, pr, rc, rr)]
    expected = sum(math.log1p(math.exp(-m)) for m in margins) / 3  # −log σ(m) = log(1 + e^(−m))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert chosen.tolist() == pytest.approx([beta * (a - c) for a, c in zip(pc, rc)])
    assert rejected.tolist() == pytest.approx([beta * (b - d) for b, d in zip(pr, rr)])
    assert not chosen.requires_grad and not rejected.requires_grad
    assert margins[2] == 0.0 and gradient_weights(chosen, rejected)[2].item() == 0.5  # a tie weighs ½


def test_gradient_is_a_weighted_likelihood_ratio():
    """∂L/∂log πθ(y_w|x) = −β·σ(−margin)/N and ∂L/∂log πθ(y_l|x) = +β·σ(−margin)/N, by autograd."""
    generator = torch.Generator().manual_seed(0)
    logps = {k: -50 + 10 * torch.randn(6, generator=generator, dtype=torch.float64)
             for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")}
    beta = 0.1
    table = logp_gradients(logps, beta)
    _, chosen, rejected = dpo_loss(**logps, beta=beta)
    expected = (beta * torch.sigmoid(-(chosen - rejected)) / 6).tolist()
    assert table["∂L/∂logp chosen (autograd)"].tolist() == pytest.approx([-e for e in expected], rel=1e-9)
    assert table["∂L/∂logp rejected (autograd)"].tolist() == pytest.approx(expected, rel=1e-9)
    assert table["−β·weight/N (formula)"].tolist() == pytest.approx([-e for e in expected], rel=1e-12)
