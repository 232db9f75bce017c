"""Shared fixtures: the tiny profile's model and tokenizer, loaded once per test session (built on first use)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from helpers.notebook import quiet_logs  # noqa: E402

quiet_logs()


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
