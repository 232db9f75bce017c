"""Project wiring: profiles, the package import, and environment.yml in step with pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from helpers import config
from helpers.config import ProfileError, load_profile, pick_dtype, resolve_profile_name
from helpers.memory import memory_note

ROOT = Path(__file__).resolve().parent.parent


def _requirements_from_environment_yml() -> set[str]:
    lines = (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines()
    start = lines.index("  - pip:")
    pip = [line.strip()[2:] for line in lines[start + 1:] if line.strip().startswith("- ")]
    return {req.replace(" ", "") for req in pip if not req.startswith("-e")}


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    assert _requirements_from_environment_yml() == {req.replace(" ", "") for req in wanted}


def test_environment_yml_installs_the_project():
    assert "      - -e ." in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines()


def test_import_from_any_folder(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import helpers, helpers.config as c; print(c.PROJECT_ROOT)"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == ROOT


def test_every_profile_is_complete():
    names = set(config.PROFILES)
    assert {"tiny", "qwen2.5-0.5b", "qwen2-0.5b", "breeze-7b", "llama2-7b-chat", "openhermes-mistral-7b"} <= names
    for profile in config.PROFILES.values():
        assert profile.model_name and memory_note(profile) and profile.lora_r > 0 and profile.max_new_tokens > 0
        assert not profile.trust_remote_code, f"{profile.name} turns on trust_remote_code"
    assert config.PROFILES["breeze-7b"].load_in_4bit
    assert config.PROFILES["breeze-7b"].system_prompt == "回覆請少於20字"
    assert (config.PROFILES["breeze-7b"].lora_r, config.PROFILES["breeze-7b"].lora_alpha) == (64, 16)


def test_auto_picks_by_hardware_and_env(monkeypatch):
    monkeypatch.delenv("DPO_PROFILE", raising=False)
    monkeypatch.setattr(config, "has_gpu", lambda: False)
    assert resolve_profile_name("auto") == "smollm2-135m"
    monkeypatch.setattr(config, "has_gpu", lambda: True)
    assert resolve_profile_name(None) == "qwen2.5-0.5b"
    monkeypatch.setenv("DPO_PROFILE", "breeze-7b")
    assert resolve_profile_name("auto") == "breeze-7b"
    assert resolve_profile_name("tiny") == "tiny", "an explicit name beats DPO_PROFILE"


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError) as error:
        load_profile("gpt-5")
    for name in config.PROFILES:
        assert name in str(error.value)


def test_gpu_profile_refused_on_cpu(monkeypatch):
    monkeypatch.setattr(config, "has_gpu", lambda: False)
    with pytest.raises(ProfileError, match="needs a CUDA GPU"):
        load_profile("breeze-7b")
    assert load_profile("breeze-7b", check_hardware=False).name == "breeze-7b"


def test_precision_follows_hardware(fake_gpu):
    assert pick_dtype("cpu") == torch.float32
    fake_gpu((7, 5), "Tesla T4")  # bf16 only emulated there, though torch.cuda.is_bf16_supported() says True
    assert pick_dtype("cuda") == torch.float16
    fake_gpu((8, 0), "NVIDIA A100-SXM4-40GB")  # Ampere and newer
    assert pick_dtype("cuda") == torch.bfloat16

def test_homework_presets_never_import_the_run_machinery():
    """Settings are resolved once, at the entry (helpers.runs): the presets know nothing of runs, so the two modules
    import each other nowhere, not even inside a function."""
    import ast

    def imported(module: str) -> set[str]:
        tree = ast.parse((ROOT / "helpers" / f"{module}.py").read_text(encoding="utf-8"))
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | \
            {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}

    assert "helpers.runs" not in imported("homework")
    assert "helpers.homework" in imported("runs")


def test_the_floors_are_what_the_pinned_libraries_need():
    """requires-python and the torch floor are no lower than what transformers, TRL and accelerate ask for."""
    import importlib.metadata as metadata
    import re
    import tomllib

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    ours = Version(re.search(r">=\s*([\d.]+)", project["requires-python"]).group(1))
    torch_floor = Version(next(re.search(r">=\s*([\d.]+)", d).group(1) for d in project["dependencies"]
                               if d.startswith("torch")))
    for name in ("transformers", "trl", "accelerate", "peft", "datasets", "bitsandbytes"):
        needed = SpecifierSet(metadata.metadata(name)["Requires-Python"] or "")
        assert ours in needed, f"{name} needs Python {needed}; requires-python says >={ours}"
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.name == "torch" and not requirement.marker:
                floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
                assert all(torch_floor >= floor for floor in floors), f"{name} needs torch {requirement.specifier}"


def test_the_readme_does_not_forbid_a_package_transformers_requires():
    import importlib.metadata as metadata

    required = {line.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip()
                for line in metadata.requires("transformers") or [] if "extra ==" not in line}
    for readme in ("README.md", "README.zh-TW.md"):
        text = (ROOT / readme).read_text(encoding="utf-8")
        for package in required:
            assert f"Do not install the `{package}` package" not in text and f"不要安裝 `{package}` 套件" not in text
