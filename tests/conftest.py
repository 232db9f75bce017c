"""Shared fixtures: the tiny profile's model and tokenizer, loaded once per test session (built on first use)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DPO_PROFILE", "tiny")  # "auto" is the tiny model in the tests (a real one on a person's CPU)

from helpers.notebook import quiet_logs, set_threads  # noqa: E402

quiet_logs()
set_threads()  # DPO_THREADS when set (`make test` runs the tests beside the notebooks, one thread each)


@pytest.fixture(scope="session")
def tiny_profile():
    from helpers.config import load_profile

    return load_profile("tiny")


@pytest.fixture(scope="session")
def tiny_path():
    from helpers.tiny_model import tiny_model_path

    return tiny_model_path()


@pytest.fixture()
def tiny(tiny_path):
    """A fresh copy of the tiny model and its tokenizer (tests may train it)."""
    from helpers.tiny_model import load_tiny

    return load_tiny(tiny_path)


CU128_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch's CUDA 12.8 wheels


@pytest.fixture()
def fake_gpu(monkeypatch):
    """Make torch.cuda answer like a real card, stubbed *below* the project's decisions: the compute capability,
    name, count and memory that torch.cuda reports; is_bf16_supported stays real (on a T4 it says True, emulated)."""
    import types

    import torch

    def install(capability=(7, 5), name="Tesla T4", count=1, total_gib=15.0, archs=CU128_ARCHS, cuda="12.8"):
        properties = types.SimpleNamespace(major=capability[0], minor=capability[1], name=name,
                                           total_memory=int(total_gib * 2**30))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: properties)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # emulated bf16 works
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(archs))
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int((total_gib - 0.3) * 2**30),
                                                                              int(total_gib * 2**30)))
        monkeypatch.setattr(torch.version, "cuda", cuda)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        return properties

    return install
