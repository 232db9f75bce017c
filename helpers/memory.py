"""One estimate of peak GPU memory for a LoRA/QLoRA DPO run, before paying for a GPU, and the source of every memory
figure the project shows (`--dry-run`, the setup cell, the homework's preflight, both READMEs' table). The model is
built from its bundled config.json on PyTorch's meta device (shapes only, nothing downloaded) and counted per module
type.

    peak ≈ context + weights × copies + max(training, measuring)

  weights      4-bit linear layers: 0.5 byte per weight + NF4 block constants (1 byte per 64 weights with double
               quantization, plus 4 bytes per 256 blocks); everything else (embeddings, LM head, norms) in the 16-bit
               compute type. Without 4-bit: every weight in 16 bit. copies: how many sets of base weights are alive
               at once; 1, because k-fold folds, sweep points and loss variants each train an adapter on the one base.
  training     LoRA state: per adapter weight, the weight and its gradient in fp32 (4 + 4 bytes; bf16 QLoRA keeps
               them in bf16, 2 + 2) and the optimizer's two moments (paged_adamw_8bit 1 + 1 bytes, AdamW 4 + 4).
               Activations: DPO runs chosen and rejected together, tokens = 2 × batch × max_length. With activation
               checkpointing every layer keeps its 16-bit input and one layer at a time is recomputed in full:
               about 2 × (7·hidden + 3·kv_width + 4·mlp_width + Σ LoRA inputs + r) bytes per token, doubled for the
               gradients. Attention: the kernel that really runs (attention_kernel): flash and memory-efficient keep
               no tokens² term; the math kernel (bf16 on a pre-Ampere card, which emulates it) keeps each layer's
               scores and probabilities, batch × heads × length² values each, and their gradients. Buffers: TRL's
               fused LM head scores 4096 tokens × 32,768 vocabulary entries at a time; a 4-bit layer adds one
               dequantized weight at a time.
  measuring    held-out log-probs: the model's logits for at most EVAL_LOGIT_VALUES values per batch
               (helpers.evaluation sizes its batches by it) plus one row's fp32 log-sum-exp; greedy generation: the
               key/value cache of gen_batch_size prompts of PROMPT_TOKENS + max_new_tokens tokens.
  context      CUDA context and cuBLAS workspace, about 0.4 GiB.

It assumes every sequence is max_length long (real batches are shorter, so real peaks are usually lower) and cannot
see allocator fragmentation or what other libraries allocate. `python -m helpers gpu-check` prints the measured
peak of a tiny 4-bit run beside this estimate for it.
"""

from __future__ import annotations

from pathlib import Path

from helpers.config import ASSETS_DIR, TINY_MODEL, Profile

MODELS_DIR = ASSETS_DIR / "models"
GIB = 2**30
T4_GIB = 14.7  # what PyTorch can allocate on a 16 GB T4 (15.0 GiB total, minus what the driver keeps)
T4_CAPABILITY = (7, 5)
COLAB_RAM_GIB = 12.7  # a free Colab runtime's RAM (Kaggle's: about 29 GiB)
ALIASES = {"meta-llama/Meta-Llama-3-8B-Instruct": "unsloth/llama-3-8b-Instruct"}  # the same weights and config
CONTEXT_GIB = 0.4
TOKEN_TILE, VOCAB_TILE = 4096, 32768
EVAL_LOGIT_VALUES = 2**27  # logits per measuring batch (helpers.evaluation): 256 MiB in 16 bit
PROMPT_TOKENS = 128  # a test prompt with its chat template and system prompt, for the generation cache


def config_path(model_name: str) -> Path | None:
    """The bundled config.json of a hub model (or a local model folder's own), None when there is none."""
    if Path(model_name).is_dir():
        return Path(model_name) / "config.json" if (Path(model_name) / "config.json").exists() else None
    if model_name == TINY_MODEL:
        from helpers.tiny_model import tiny_model_path

        return tiny_model_path() / "config.json"
    path = MODELS_DIR / ALIASES.get(model_name, model_name).replace("/", "--") / "config.json"
    return path if path.exists() else None


def count_parameters_by_type(config_file: Path, lora_targets) -> dict:
    """Parameter counts of the model built on the meta device: linear layers inside the blocks (what 4-bit
    quantizes), embeddings and LM head, norms; plus the LoRA adapter's size for the given targets and rank 1."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(config_file))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    counts = {"linear": 0, "embedding": 0, "norm": 0, "lora_per_rank": 0, "lora_inputs": 0, "lora_modules": 0,
              "largest_linear": 0}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            counts["linear"] += module.weight.numel()
            counts["largest_linear"] = max(counts["largest_linear"], module.weight.numel())
            if _targeted(name, lora_targets):
                counts["lora_per_rank"] += module.in_features + module.out_features
                counts["lora_inputs"] += module.in_features
                counts["lora_modules"] += 1
    seen = set()
    for module in (model.get_input_embeddings(), head):
        if id(module.weight) not in seen:
            seen.add(id(module.weight))
            counts["embedding"] += module.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    counts["norm"] = total - counts["linear"] - counts["embedding"]
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    counts.update(total=total, layers=layers, hidden=config.hidden_size, mlp=config.intermediate_size, heads=heads,
                  vocab=config.vocab_size, kv_width=config.hidden_size // heads
                  * getattr(config, "num_key_value_heads", heads))
    counts["lora_inputs_per_layer"] = counts["lora_inputs"] // layers
    counts["lora_modules_per_layer"] = counts["lora_modules"] // layers
    return counts


def _targeted(name: str, targets) -> bool:
    """Whether a linear layer gets a LoRA adapter under PEFT's target_modules rule (a name suffix, or all-linear)."""
    if targets == "all-linear":
        return True
    return name.rsplit(".", 1)[-1] in set(targets)


def parameter_count(profile: Profile) -> int | None:
    """The profile's model's parameter count from its config, None without a bundled config."""
    path = config_path(profile.model_name)
    return count_parameters_by_type(path, profile.lora_target_modules)["total"] if path else None


def attention_kernel(dtype: str, capability: tuple[int, int] | None) -> str:
    """The scaled-dot-product attention kernel PyTorch picks: flash for fp16/bf16 from Ampere (8.0), memory-efficient
    for fp16 and fp32 before it, math (a tokens² score matrix) for bf16 on a card that only emulates it; "cpu"."""
    if capability is None:
        return "cpu"
    if dtype in ("fp16", "bf16") and tuple(capability) >= (8, 0):
        return "flash"
    return "math" if dtype == "bf16" else "memory-efficient"


def estimate_peak_memory(profile: Profile, batch_size: int | None = None, max_length: int | None = None,
                         gpu: tuple[int, int] | None = T4_CAPABILITY, dtype: str | None = None) -> dict | None:
    """GiB per component (see the module docstring) and the total, for the profile's model on a GPU of compute
    capability `gpu` (a T4 unless given; None: a CPU in fp32); dtype: "fp16" or "bf16" (default: the card's own
    choice). None without a bundled config."""
    path = config_path(profile.model_name)
    if path is None:
        return None
    c = count_parameters_by_type(path, profile.lora_target_modules)
    batch, length = batch_size or profile.batch_size, max_length or profile.max_length
    dtype = dtype or ("fp32" if gpu is None else "bf16" if tuple(gpu) >= (8, 0) else "fp16")
    half = 4 if dtype == "fp32" else 2  # bytes of the compute type
    if profile.load_in_4bit:
        weights = c["linear"] * (0.5 + 1 / 64 + 4 / (64 * 256)) + (c["embedding"] + c["norm"]) * half
    else:
        weights = c["total"] * half
    lora = c["lora_per_rank"] * profile.lora_r
    adapter_bytes = 2 if dtype == "bf16" and profile.load_in_4bit else 4  # TRL keeps bf16 QLoRA adapters in bf16
    lora_state = lora * (adapter_bytes * 2 + (2 if "8bit" in profile.optim else 8))
    tokens, sequences = 2 * batch * length, 2 * batch
    per_token = 2 * (7 * c["hidden"] + 3 * c["kv_width"] + 4 * c["mlp"] + c["lora_inputs_per_layer"]
                     + profile.lora_r * c["lora_modules_per_layer"])
    one_layer = tokens * (per_token + (c["lora_inputs_per_layer"] if profile.lora_dropout else 0))
    kernel = attention_kernel(dtype, gpu)
    scores = 4 * sequences * c["heads"] * length ** 2 * half if kernel in ("math", "cpu") else 0  # one layer's
    if profile.gradient_checkpointing:
        activations = c["layers"] * tokens * c["hidden"] * half + 2 * one_layer + scores
    else:
        activations = c["layers"] * (one_layer + scores) + one_layer
    buffers = min(tokens, TOKEN_TILE) * min(c["vocab"], VOCAB_TILE) * half * 2
    buffers += c["largest_linear"] * half if profile.load_in_4bit else 0
    logits = min(EVAL_LOGIT_VALUES, 16 * length * c["vocab"]) * half + length * c["vocab"] * 4
    cache = profile.gen_batch_size * (PROMPT_TOKENS + profile.max_new_tokens) * c["layers"] * 2 * c["kv_width"] * half
    parts = {"weights": weights, "training": lora_state + activations + buffers, "measuring": logits + cache}
    gib = {name: round(value / GIB, 2) for name, value in parts.items()}
    gib["cuda_context"] = 0.0 if gpu is None else CONTEXT_GIB
    gib["total"] = round(gib["weights"] + max(gib["training"], gib["measuring"]) + gib["cuda_context"], 2)
    return {"gib": gib, "parameters": c["total"], "lora_parameters": lora, "copies": 1, "dtype": dtype,
            "attention": kernel, "quantized_parameters": c["linear"] if profile.load_in_4bit else 0,
            "tokens_per_step": tokens, "fits_t4": gib["total"] <= T4_GIB, "t4_margin_gib": round(T4_GIB - gib["total"], 1),
            "export_gib": round(c["total"] * 2 / GIB + 0.5, 1),
            "config": str(path.relative_to(path.parents[2])) if MODELS_DIR in path.parents else path.name}


def memory_note(profile: Profile) -> str:
    """One line on what the profile needs: the estimate on a T4 for a GPU profile, the measured RAM for a CPU one."""
    if not profile.needs_gpu:
        return profile.memory
    estimate = estimate_peak_memory(profile)
    if estimate is None:
        return profile.memory or "no bundled config.json: not estimated"
    return (f"~{estimate['gib']['total']:.1f} GiB estimated peak on a T4 in {estimate['dtype']} "
            f"({'fits' if estimate['fits_t4'] else 'does NOT fit'} its {T4_GIB:g} GiB usable, "
            f"{abs(estimate['t4_margin_gib']):.1f} GiB {'to spare' if estimate['fits_t4'] else 'short'})")


TABLE_HEADERS = {
    "en": ("setting", "model", "estimated peak on a T4 (fp16)", "weights", "on a T4 (14.7 GiB usable)",
           "export (16-bit merge)"),
    "zh-TW": ("設定", "模型", "T4 上估計的峰值（fp16）", "權重", "T4（可用 14.7 GiB）", "匯出（合併為 16 位元）"),
}


def memory_table(lang: str = "en") -> str:
    """The READMEs' memory table, in Markdown: every GPU profile and the two homework presets, from this estimator."""
    from helpers.config import PROFILES
    from helpers.homework import HOMEWORKS

    settings = {f"`{h.name}`": h.course_profile() for h in HOMEWORKS.values()}
    settings.update({f"`{name}`": p for name, p in PROFILES.items() if p.needs_gpu})
    fits, short = ("fits, {:.1f} GiB to spare", "does NOT fit ({:.1f} GiB short)") if lang == "en" else \
        ("放得下，尚餘 {:.1f} GiB", "放不下（差 {:.1f} GiB）")
    ram = "GPU or RAM ≥ {:.1f} GiB" if lang == "en" else "GPU 或記憶體 ≥ {:.1f} GiB"
    lines = ["| " + " | ".join(TABLE_HEADERS[lang]) + " |", "|" + "---|" * len(TABLE_HEADERS[lang])]
    for name, profile in settings.items():
        e = estimate_peak_memory(profile)
        verdict = (fits if e["fits_t4"] else short).format(abs(e["t4_margin_gib"]))
        lines.append(f"| {name} | {profile.model_name} | ~{e['gib']['total']:.1f} GiB | {e['gib']['weights']:.1f} GiB "
                     f"| {verdict} | {ram.format(e['export_gib'])} |")
    return "\n".join(lines)
