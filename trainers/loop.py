"""The training loop both frameworks share: same batches, same order, same evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
from rich.progress import Progress

from trainers.architecture import ModelSpec, to_model_input
from trainers.data import Dataset


@dataclass(frozen=True)
class Hyperparams:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0


@dataclass
class TrainedModel:
    framework: str
    model: Any
    train_seconds: float
    test_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    fw: ModuleType,
    spec: ModelSpec,
    data: Dataset,
    hp: Hyperparams,
    weights: list[np.ndarray],
    progress: Progress,
    log_scalars: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainedModel:
    """Train one framework's build on the shared batch order; returns it evaluated on test."""
    fw.set_seed(hp.seed)
    model = fw.build_model(spec, weights)
    trainer = fw.Trainer(model, hp.lr)
    x_train = to_model_input(data.train.x, spec.arch)
    x_val, x_test = to_model_input(data.val.x, spec.arch), to_model_input(data.test.x, spec.arch)
    orders = data.batch_orders(hp.epochs, hp.seed)
    steps = sum(-(-len(order) // hp.batch_size) for order in orders)
    task = progress.add_task(f"{fw.FRAMEWORK:<10}", total=steps, status="")
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch, order in enumerate(orders, start=1):
        loss_sum, correct = 0.0, 0
        for start in range(0, len(order), hp.batch_size):
            idx = order[start : start + hp.batch_size]
            loss, hits = trainer.step(x_train[idx], data.train.y[idx])
            loss_sum += loss * len(idx)
            correct += hits
            progress.advance(task)
        val_loss, val_acc = trainer.evaluate(x_val, data.val.y)
        record = {
            "loss": loss_sum / len(order),
            "accuracy": correct / len(order),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
        }
        history.append(record)
        progress.update(
            task,
            status=f"epoch {epoch}/{hp.epochs} loss {record['loss']:.4f} "
            f"acc {record['accuracy']:.3f} val_acc {val_acc:.3f}",
        )
        if log_scalars is not None:
            log_scalars(epoch, record)
    train_seconds = time.perf_counter() - started
    _, test_acc = trainer.evaluate(x_test, data.test.y)
    return TrainedModel(fw.FRAMEWORK, model, train_seconds, test_acc, history)
