"""An estimate of peak GPU memory for a DPO run with LoRA or QLoRA, before paying for a GPU: the model is built from
its bundled config.json on PyTorch's meta device (shapes only, no weights, nothing downloaded) and its parameters
are counted per module type.

    peak ≈ weights + LoRA state + activations + buffers + CUDA context

  weights      4-bit linear layers: 0.5 byte per weight + NF4 block constants (1 byte per 64 weights with double
               quantization, plus 4 bytes per 256 blocks; 4 bytes per 64 without); everything else (embeddings,
               LM head, norms) in the 16-bit compute type, 2 bytes. Without 4-bit: every weight in 16 bit.
  LoRA state   per adapter weight: the weight and its gradient (2 + 2 bytes: TRL keeps QLoRA adapters in bf16;
               4 + 4 in fp32 otherwise, PEFT's default) and the optimizer's two moments (paged_adamw_8bit: 1 + 1
               bytes; AdamW: 4 + 4).
  activations  DPO runs chosen and rejected together: tokens = 2 × batch × max_length. With gradient checkpointing,
               every layer keeps its 16-bit input (tokens × hidden × 2 bytes × layers) and one layer at a time is
               recomputed in full: about 2 × (7·hidden + 3·kv_width + 4·mlp_width + Σ LoRA targets' inputs + r)
               bytes per token, doubled for its gradients, plus one byte per LoRA input for the dropout mask.
               Without checkpointing, every layer keeps its full set. Attention uses PyTorch's memory-efficient
               kernel (no tokens² term). The reference pass (adapter off, no gradient) stores nothing.
  buffers      TRL's fused LM head scores 4096 tokens × 32,768 vocabulary entries at a time, never the full logits;
               4-bit layers add one dequantized 16-bit weight at a time (the largest linear layer).
  context      CUDA context and cuBLAS workspace, about 0.4 GiB.

It cannot see allocator fragmentation, sequences shorter than max_length (real batches are usually shorter, so
real peaks are usually lower), or what other libraries allocate (unsloth, which HW7's notebook uses, saves more).
"""

from __future__ import annotations

from pathlib import Path

from helpers.config import ASSETS_DIR, TINY_MODEL, Profile

MODELS_DIR = ASSETS_DIR / "models"
GIB = 2**30
T4_GIB = 15.0  # a T4's 16 GB card shows 15 GiB to PyTorch (about 14.7 usable)
ALIASES = {"meta-llama/Meta-Llama-3-8B-Instruct": "unsloth/llama-3-8b-Instruct"}  # the same weights and config
CONTEXT_GIB = 0.4
TOKEN_TILE, VOCAB_TILE = 4096, 32768


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
    layers = config.num_hidden_layers
    counts.update(total=total, layers=layers, hidden=config.hidden_size, mlp=config.intermediate_size,
                  vocab=config.vocab_size, kv_width=config.hidden_size // config.num_attention_heads
                  * getattr(config, "num_key_value_heads", config.num_attention_heads))
    counts["lora_inputs_per_layer"] = counts["lora_inputs"] // layers
    counts["lora_modules_per_layer"] = counts["lora_modules"] // layers
    return counts


def _targeted(name: str, targets) -> bool:
    """Whether a linear layer gets a LoRA adapter under PEFT's target_modules rule (a name suffix, or all-linear)."""
    if targets == "all-linear":
        return True
    return name.rsplit(".", 1)[-1] in set(targets)


def estimate_peak_memory(profile: Profile, batch_size: int | None = None, max_length: int | None = None,
                         on_gpu: bool = True) -> dict | None:
    """GiB per component (see the module docstring) and the total, for the profile's model; None without a config."""
    path = config_path(profile.model_name)
    if path is None:
        return None
    c = count_parameters_by_type(path, profile.lora_target_modules)
    batch, length = batch_size or profile.batch_size, max_length or profile.max_length
    half = 2 if on_gpu else 4  # the compute type's bytes: 16 bit on a GPU, fp32 on a CPU
    if profile.load_in_4bit:
        per_weight = 0.5 + 1 / 64 + 4 / (64 * 256)
        weights = c["linear"] * per_weight + (c["embedding"] + c["norm"]) * half
    else:
        weights = c["total"] * half
    lora = c["lora_per_rank"] * profile.lora_r
    adapter_bytes = 2 if profile.load_in_4bit else 4
    optimizer_bytes = 2 if "8bit" in profile.optim else 8
    lora_state = lora * (2 * adapter_bytes + optimizer_bytes)
    tokens = 2 * batch * length
    per_token = 2 * (7 * c["hidden"] + 3 * c["kv_width"] + 4 * c["mlp"] + c["lora_inputs_per_layer"]
                     + profile.lora_r * c["lora_modules_per_layer"])
    one_layer = tokens * (per_token + (c["lora_inputs_per_layer"] if profile.lora_dropout else 0))
    if profile.gradient_checkpointing:
        activations = c["layers"] * tokens * c["hidden"] * half + 2 * one_layer
    else:
        activations = c["layers"] * one_layer + one_layer
    tile = min(tokens, TOKEN_TILE) * min(c["vocab"], VOCAB_TILE) * half * 2
    tile += c["largest_linear"] * half if profile.load_in_4bit else 0
    parts = {"weights": weights, "lora_state": lora_state, "activations": activations, "buffers": tile}
    gib = {name: round(value / GIB, 2) for name, value in parts.items()}
    gib["cuda_context"] = CONTEXT_GIB if on_gpu else 0.0
    gib["total"] = round(sum(gib.values()), 2)
    return {"gib": gib, "parameters": c["total"], "lora_parameters": lora, "quantized_parameters": c["linear"]
            if profile.load_in_4bit else 0, "tokens_per_step": tokens, "config": str(path.relative_to(path.parents[2]))
            if MODELS_DIR in path.parents else path.name, "fits_t4": gib["total"] <= T4_GIB}
