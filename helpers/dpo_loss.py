"""DPO's loss by hand: summed completion log-probs, the sigmoid loss and its implicit rewards, checked against TRL.

The DPO objective (Rafailov et al., 2023), for a prompt x with a chosen answer y_w and a rejected answer y_l:

    L = −mean over pairs of log σ( β·[log πθ(y_w|x) − log πref(y_w|x)] − β·[log πθ(y_l|x) − log πref(y_l|x)] )

where log π(y|x) is the SUM of the log-probabilities of the answer's tokens, and β·[log πθ − log πref] is an
answer's implicit reward. TRL's DPOTrainer (loss_type "sigmoid") computes exactly this; `compare_with_trl` shows it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from helpers.config import OUTPUTS_DIR, Profile

METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
           "logps/chosen", "logps/rejected")  # TRL's names for what it logs each step


def sequence_logps(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   completion_mask: torch.Tensor) -> torch.Tensor:
    """log π(y|x) per row: the summed log-probabilities of the completion tokens (prompt and padding left out)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    logits = logits[:, :-1].float()  # position t predicts token t+1, so the last position predicts nothing
    targets = input_ids[:, 1:]  # the tokens that were actually there
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # log π(y_t|x, y_<t)
    mask = completion_mask[:, 1:].to(token_logps.dtype)  # 1 where the target is an answer token, 0 on prompt/padding
    return (token_logps * mask).sum(dim=-1)  # Σ_t log π(y_t|x, y_<t) = log π(y|x)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sigmoid DPO loss (mean over pairs) and the chosen and rejected rewards β·log-ratio (detached, as TRL logs them)."""
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # log πθ(y_w|x) − log πref(y_w|x)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # log πθ(y_l|x) − log πref(y_l|x)
    logits = beta * (chosen_logratios - rejected_logratios)  # β·(difference of log-ratios): the reward margin
    loss = -F.logsigmoid(logits).mean()  # −log σ(margin), averaged over the pairs in the batch
    chosen_rewards = beta * chosen_logratios.detach()  # r̂(x, y_w) = β·log πθ(y_w|x)/πref(y_w|x)
    rejected_rewards = beta * rejected_logratios.detach()  # r̂(x, y_l)
    return loss, chosen_rewards, rejected_rewards


def reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """TRL's logged reward metrics of a batch: mean rewards, mean margin, share of pairs ranked right."""
    margins = chosen_rewards - rejected_rewards
    return {"rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/margins": margins.mean().item(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item()}


def logp_gradients(logps: dict[str, torch.Tensor], beta: float) -> pd.DataFrame:
    """Per pair: autograd's ∂loss/∂log πθ(y_w|x) and ∂loss/∂log πθ(y_l|x) next to the formula ∓β·σ(−margin)/N."""
    policy = {k: logps[k].detach().clone().requires_grad_(True) for k in ("policy_chosen_logps", "policy_rejected_logps")}
    loss, chosen_rewards, rejected_rewards = dpo_loss(**policy, ref_chosen_logps=logps["ref_chosen_logps"].detach(),
                                                      ref_rejected_logps=logps["ref_rejected_logps"].detach(), beta=beta)
    loss.backward()
    weights = gradient_weights(chosen_rewards, rejected_rewards)
    n = len(weights)
    return pd.DataFrame({"margin": (chosen_rewards - rejected_rewards).tolist(), "weight σ(−margin)": weights.tolist(),
                         "∂L/∂logp chosen (autograd)": policy["policy_chosen_logps"].grad.tolist(),
                         "−β·weight/N (formula)": (-beta * weights / n).tolist(),
                         "∂L/∂logp rejected (autograd)": policy["policy_rejected_logps"].grad.tolist()})


def gradient_weights(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """σ(−margin) per pair: how much each pair pulls on the gradient (near 1 when ranked wrong, near 0 when right)."""
    return torch.sigmoid(rejected_rewards - chosen_rewards)


def layout_table(batch: dict[str, torch.Tensor]) -> pd.DataFrame:
    """One row per sequence of a TRL batch: which pair, which answer, and its prompt, completion and padding lengths."""
    attention, completion = batch["attention_mask"].bool(), batch["completion_mask"].bool()
    n = len(attention) // 2
    return pd.DataFrame({"pair": [i % n for i in range(2 * n)], "answer": ["chosen"] * n + ["rejected"] * n,
                         "prompt tokens": (attention & ~completion).sum(1).tolist(),
                         "completion tokens": completion.sum(1).tolist(), "padding": (~attention).sum(1).tolist()})


def mask_table(tokenizer, batch: dict[str, torch.Tensor], row: int = 0, context: int = 4) -> pd.DataFrame:
    """A window of one row around where its completion starts and where its padding starts, token by token."""
    ids, completion = batch["input_ids"][row], batch["completion_mask"][row]
    start, end = int(completion.argmax()), int(batch["attention_mask"][row].sum())
    positions = sorted({*range(max(start - context, 0), min(start + context, end)),
                        *range(max(end - context, start), min(end + context, len(ids)))})
    return pd.DataFrame({"token": [tokenizer.decode([int(ids[p])]) for p in positions],
                         "input_ids": [int(ids[p]) for p in positions],
                         "attention_mask": [int(batch["attention_mask"][row, p]) for p in positions],
                         "completion_mask": [int(completion[p]) for p in positions]}, index=positions).T


@contextlib.contextmanager
def reference_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the reference inside this block: the LoRA adapter switched off (or TRL's frozen "ref" copy, if it made one)."""
    if "ref" in getattr(model, "peft_config", {}):  # a model that came with its own adapter (4-bit profiles)
        previous = model.active_adapter
        model.set_adapter("ref")
        try:
            yield
        finally:
            model.set_adapter(previous)
    else:
        with model.disable_adapter():  # base weights only = the SFT model DPO started from
            yield


def batch_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Policy and reference log π(y|x) of a TRL batch (rows 0..N−1 chosen, N..2N−1 the same prompts' rejected)."""
    device = next(model.parameters()).device
    inputs = [batch[k].to(device) for k in ("input_ids", "attention_mask", "completion_mask")]
    policy = sequence_logps(model, *inputs)  # adapter on: πθ
    with torch.no_grad(), reference_mode(model):
        reference = sequence_logps(model, *inputs)  # adapter off: πref, never trained
    policy_chosen, policy_rejected = policy.chunk(2)
    ref_chosen, ref_rejected = reference.chunk(2)
    return {"policy_chosen_logps": policy_chosen, "policy_rejected_logps": policy_rejected,
            "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}


def hand_metrics(model: torch.nn.Module, batch: dict[str, torch.Tensor], beta: float) -> dict[str, float]:
    """The loss and reward metrics of one batch, computed by hand, under TRL's names."""
    with torch.no_grad():
        logps = batch_logps(model, batch)
        loss, chosen_rewards, rejected_rewards = dpo_loss(**logps, beta=beta)
    return {"loss": loss.item(), **reward_metrics(chosen_rewards, rejected_rewards),
            "logps/chosen": logps["policy_chosen_logps"].mean().item(),
            "logps/rejected": logps["policy_rejected_logps"].mean().item()}


def make_dpo_trainer(model: torch.nn.Module, tokenizer, pairs, profile: Profile, beta: float | None = None,
                     seed: int = 0, loss_type: tuple[str, ...] = ("sigmoid",),
                     output_dir: str | Path = OUTPUTS_DIR / "scratch" / "dpo-from-scratch"):
    """train_dpo's DPOTrainer (new LoRA adapter, reference = adapter off), by default pure sigmoid DPO."""
    from helpers.training import dpo_trainer

    return dpo_trainer(model, tokenizer, pairs, profile, output_dir, beta, seed=seed,
                       loss_type=list(loss_type),  # the tiny profile's own loss adds an "sft" term
                       precompute_ref_log_probs=False)  # the reference computed live, as the loss by hand does


def first_batch(trainer) -> dict[str, torch.Tensor]:
    """The first batch TRL trains on: its own tokenization, collator (right padding, completion mask) and order."""
    return next(iter(trainer.get_train_dataloader()))


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside the block (no dropout: both sides see the same network), the previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def trl_metrics(trainer, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """TRL's loss and logged metrics for one batch: DPOTrainer.compute_loss, then what it appended to trainer._metrics."""
    trainer._metrics["eval"].clear()  # compute_loss appends to _metrics["train" or "eval"], by the model's mode
    with evaluating(trainer.model), torch.no_grad():
        loss = trainer.compute_loss(trainer.model, trainer._prepare_inputs(batch))
    logged = {key: values[-1] for key, values in trainer._metrics["eval"].items()}
    trainer._metrics["eval"].clear()
    return {"loss": loss.item(), **{key: logged[key] for key in METRICS[1:]}}


def compare_with_trl(trainer, batch: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Hand-computed and TRL's values for the same batch and weights, side by side, with their absolute difference."""
    with evaluating(trainer.model):
        hand = hand_metrics(trainer.model, batch, trainer.beta)
    table = pd.DataFrame({"by hand": hand, "TRL": trl_metrics(trainer, batch)}).loc[list(METRICS)]
    table["abs diff"] = (table["by hand"] - table["TRL"]).abs()
    return table


def train_steps(trainer, steps: int, learning_rate: float | None = None) -> list[float]:
    """A few DPO steps with the hand-written loss and plain AdamW on the adapter: moves the policy off the reference."""
    model = trainer.model
    params = [p for p in model.parameters() if p.requires_grad]  # only the LoRA weights
    optimizer = torch.optim.AdamW(params, lr=learning_rate or trainer.args.learning_rate)
    losses = []
    for _, batch in zip(range(steps), trainer.get_train_dataloader()):  # the same batches, in TRL's order
        loss, _, _ = dpo_loss(**batch_logps(model, batch), beta=trainer.beta)
        loss.backward()  # gradients reach the LoRA weights through the policy log-probs only
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def plot_beta_effect(betas: tuple[float, ...] = (0.05, 0.1, 0.5, 1.0), span: float = 40.0):
    """The loss −log σ(β·Δ) and a pair's gradient weight σ(−β·Δ) against Δ, the difference of log-ratios, per β."""
    import matplotlib.pyplot as plt

    delta = torch.linspace(-span, span, 401)  # Δ = log-ratio(chosen) − log-ratio(rejected), in nats; margin = β·Δ
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    for beta in betas:
        left.plot(delta, -F.logsigmoid(beta * delta), label=f"β = {beta}")
        right.plot(delta, torch.sigmoid(-beta * delta), label=f"β = {beta}")
    left.set(title="loss −log σ(β·Δ)", xlabel="Δ = chosen log-ratio − rejected log-ratio (nats)", ylabel="loss")
    right.set(title="gradient weight σ(−β·Δ)", xlabel="Δ (nats)", ylabel="weight")
    left.set_ylim(0, 3)  # near ln 2 for small β; far out, the loss grows like β·|Δ|
    for ax in (left, right):
        ax.axvline(0, color="#999", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pair_weights(gradients: pd.DataFrame):
    """Each pair of the batch on the curve σ(−margin): the pairs ranked wrong (left) pull hardest."""
    import matplotlib.pyplot as plt

    reach = max(4.0, float(gradients["margin"].abs().max()) + 0.5)
    margin = torch.linspace(-reach, reach, 201)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(margin, torch.sigmoid(-margin), color="#999", label="σ(−margin)")
    ax.scatter(gradients["margin"], gradients["weight σ(−margin)"], color="#e07a3f", zorder=3, label="pairs of the batch")
    ax.set(title="gradient weight per pair", xlabel="margin = r̂(chosen) − r̂(rejected)", ylabel="weight", ylim=(0, 1))
    ax.axvline(0, color="#999", lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
