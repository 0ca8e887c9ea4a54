"""Shared fixtures. A trained model store is built once per session, with the defaults."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits-mlp and digits-cnn, both frameworks, default hyper-parameters, version 1."""
    from trainers.pipeline import TrainConfig, run_training

    store = tmp_path_factory.mktemp("model_store")
    console = Console(quiet=True)
    for arch in ("mlp", "cnn"):
        run_training(TrainConfig(arch=arch, model_store=store), console)
    return store


@pytest.fixture
def figures(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a test's measured figures to the terminal even while pytest captures output,
    so `make test` shows them (the fault and simulation tests report what they saw)."""

    def show(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)

    return show
