"""The tiny offline chat model: a byte-level BPE tokenizer and a ~1M-parameter Qwen2 model, built and
pretrained deterministically on the project's bundled text, cached by a hash of the recipe."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

from typing import TYPE_CHECKING

import torch

from helpers.config import CACHE_DIR, DATA_DIR
from helpers.folders import hold_lock, is_complete, keep_if_complete, staged_dir
from helpers.killpoints import kill_point

if TYPE_CHECKING:  # tokenizers and transformers are imported where the model is built or loaded
    from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"  # padding only, never the end of an answer
BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"  # ends every chat turn, and so every generated answer
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN]

# Qwen2's pre-tokenizer split: words, numbers one digit at a time, punctuation, white space. Training with the
# same split and NFC that transformers' Qwen2Tokenizer applies on reload keeps the token ids identical.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ChatML, as Qwen uses it. A system message is rendered when given; none is added by default.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

RECIPE = {
    "version": 2,  # 2: generation never emits a token that holds only part of a character
    "tokenizer": {"vocab_size": 3000, "min_frequency": 2, "max_token_length": 9},
    "model": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
    },
    "pretrain": {"steps": 200, "batch_size": 16, "seq_len": 64, "learning_rate": 3e-3, "seed": 0},
    "corpus_files": ["labelled_data.json", "test_prompt.json"],
}


def corpus_texts(data_dir: Path = DATA_DIR, files: list[str] | None = None) -> list[str]:
    """Every prompt and answer of the bundled training files, one text each (held-out eval data excluded)."""
    texts: list[str] = []
    for name in files or RECIPE["corpus_files"]:
        rows = json.loads((Path(data_dir) / name).read_text(encoding="utf-8"))
        for row in rows:
            texts.extend(row[key] for key in ("prompt", "support", "oppose") if key in row)
    return texts


def heldout_texts(data_dir: Path = DATA_DIR) -> list[str]:
    """Prompts and answers of the held-out eval file: never trained on, used to check the pretraining."""
    rows = json.loads((Path(data_dir) / "eval_data.json").read_text(encoding="utf-8"))
    return [row[key] for row in rows for key in ("prompt", "support", "oppose")]


def recipe_hash(texts: list[str], recipe: dict = RECIPE) -> str:
    """A short hash of the recipe and the corpus: a different one means a different model."""
    payload = json.dumps({"recipe": recipe, "corpus": texts, "torch": torch.__version__.split("+")[0]},
                         ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def train_tokenizer(texts: list[str], recipe: dict = RECIPE) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (no unknown tokens for any UTF-8 input) with ChatML special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    settings = recipe["tokenizer"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings["vocab_size"],
        min_frequency=settings["min_frequency"],
        max_token_length=settings["max_token_length"],  # 9 bytes = 3 CJK characters: word-like Chinese tokens
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[BOS_TOKEN],
        chat_template=CHAT_TEMPLATE,
        model_max_length=recipe["model"]["max_position_embeddings"],
        padding_side="left",  # generation pads on the left; trainers set their own side
    )


def partial_character_tokens(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of byte-level tokens that hold only part of a UTF-8 character (a Chinese character is 3 bytes).

    Generating one of them can leave a broken character ("\ufffd") in the answer, when the pieces come out of order
    or the answer ends mid-character. Banning them at generation time makes every answer valid text: each allowed
    token is whole characters, so any sequence of them is too. Encoding (training, log-probs) still uses them.
    """
    return [i for i in range(len(tokenizer)) if "\ufffd" in tokenizer.decode([i])]


def make_model(tokenizer: PreTrainedTokenizerFast, recipe: dict = RECIPE) -> torch.nn.Module:
    """A freshly initialised tiny Qwen2 causal LM sized for the tokenizer."""
    from transformers import Qwen2Config

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **recipe["model"],
    )
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _packed_batches(ids: list[int], seq_len: int, batch_size: int, steps: int, seed: int):
    """Random windows of the concatenated corpus, reproducible from the seed."""
    data = torch.tensor(ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    high = len(data) - seq_len - 1
    for _ in range(steps):
        starts = torch.randint(0, max(high, 1), (batch_size,), generator=generator)
        yield torch.stack([data[s:s + seq_len] for s in starts.tolist()])


def corpus_ids(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> list[int]:
    """All texts tokenized and joined, each followed by the end-of-turn token."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    return ids


@torch.no_grad()
def lm_loss(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, texts: list[str], seq_len: int = 64) -> float:
    """Mean next-token cross-entropy of the model on the texts, in non-overlapping windows."""
    model.eval()
    ids = torch.tensor(corpus_ids(tokenizer, texts))
    n = (len(ids) - 1) // seq_len
    windows = ids[: n * seq_len + 1]
    inputs = torch.stack([windows[i * seq_len:(i + 1) * seq_len + 1] for i in range(n)])
    return float(model(input_ids=inputs, labels=inputs).loss)


def pretrain(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, texts: list[str],
             recipe: dict = RECIPE) -> list[float]:
    """A short plain language-model pretraining, so the model writes text-like output before chat tuning."""
    settings = recipe["pretrain"]
    torch.manual_seed(settings["seed"])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"], weight_decay=0.01)
    steps = settings["steps"]
    warmup = steps // 10
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    losses = []
    batches = _packed_batches(corpus_ids(tokenizer, texts), settings["seq_len"], settings["batch_size"], steps,
                              settings["seed"])
    for batch in batches:
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def build_tiny_model(out_dir: Path, texts: list[str] | None = None, recipe: dict = RECIPE,
                     heldout: list[str] | None = None) -> dict:
    """Build tokenizer and model from scratch into out_dir (staged, COMPLETE written last, then swapped in);
    returns build facts."""
    start = time.perf_counter()
    texts = corpus_texts() if texts is None else texts
    torch.manual_seed(recipe["pretrain"]["seed"])
    tokenizer = train_tokenizer(texts, recipe)
    model = make_model(tokenizer, recipe)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = False
    model.generation_config.suppress_tokens = partial_character_tokens(tokenizer)  # answers are always valid text
    untrained_loss = lm_loss(model, tokenizer, heldout) if heldout else None
    losses = pretrain(model, tokenizer, texts, recipe)
    facts = {
        "recipe_hash": recipe_hash(texts, recipe),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "first_loss": losses[0],
        "last_loss": sum(losses[-20:]) / len(losses[-20:]),
        "heldout_loss_untrained": untrained_loss,
        "heldout_loss": lm_loss(model, tokenizer, heldout) if heldout else None,
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    with staged_dir(Path(out_dir)) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        kill_point("tiny-cache")  # the crash test's; nothing unless DPO_KILL_AT is set
        tokenizer.save_pretrained(staging)
        (staging / "build.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts


def tiny_model_path(cache_dir: Path = CACHE_DIR, texts: list[str] | None = None) -> Path:
    """The folder of the tiny model for the current recipe and corpus, built on first use (~20 s) and cached; one
    process builds while the others wait, and a folder that is not complete is set aside and built again."""
    texts = corpus_texts() if texts is None else texts
    path = Path(cache_dir) / f"tiny-{recipe_hash(texts)}"
    if not is_complete(path):
        with hold_lock(path, wait=float("inf")):
            if not keep_if_complete(path):  # another process may have built it while this one waited
                build_tiny_model(path, texts, heldout=heldout_texts())
    return path


def load_tiny(path: Path | None = None) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """Load the cached tiny model and its tokenizer (builds them first if needed)."""
    path = Path(path) if path else tiny_model_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tokenizer


def weights_hash(model: torch.nn.Module) -> str:
    """A hash of every weight tensor, to check that two builds are identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
