"""The PyTorch build of the models, its training step and its TorchScript export.

The modules mirror the Keras ones layer for layer: they take NHWC input (permuted to
NCHW inside) and flatten in NHWC order, so Keras weights load without reordering.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.architecture import CONV_FILTERS, CONV_KERNEL, HIDDEN_CNN, HIDDEN_MLP, POOL, ModelSpec

FRAMEWORK = "pytorch"


class Standardize(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # buffers read back as `Tensor | Module` to mypy; class-level annotations would
        # fix that but TorchScript cannot resolve them under postponed annotations
        return (x - self.mean) / self.std  # type: ignore[operator]


class MLP(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.standardize = Standardize(spec.mean, spec.std)
        self.fc1 = nn.Linear(spec.input_shape[0], HIDDEN_MLP)
        self.fc2 = nn.Linear(HIDDEN_MLP, HIDDEN_MLP)
        self.logits = nn.Linear(HIDDEN_MLP, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardize(x)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.logits(x)


class CNN(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.standardize = Standardize(spec.mean, spec.std)
        self.conv = nn.Conv2d(1, CONV_FILTERS, CONV_KERNEL)
        self.pool = nn.MaxPool2d(POOL)
        self.fc = nn.Linear(spec.pooled_features, HIDDEN_CNN)
        self.logits = nn.Linear(HIDDEN_CNN, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardize(x).permute(0, 3, 1, 2)  # NHWC wire layout -> NCHW
        x = self.pool(torch.relu(self.conv(x)))
        x = x.permute(0, 2, 3, 1).flatten(1)  # flatten in NHWC order, as Keras does
        x = torch.relu(self.fc(x))
        return self.logits(x)


class Serving(nn.Module):
    """The exported module: raw pixels in, the named outputs of the shared contract out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(input)
        return {
            "probabilities": torch.softmax(logits, dim=-1),
            "class": torch.argmax(logits, dim=-1).to(torch.int64),
        }


def build_model(spec: ModelSpec, weights: list[np.ndarray]) -> nn.Module:
    """A module producing logits, initialised with Keras-layout `weights`."""
    net: nn.Module = MLP(spec) if spec.arch == "mlp" else CNN(spec)
    params = [p for name, p in net.named_parameters()]
    with torch.no_grad():
        for param, value in zip(params, weights, strict=True):
            param.copy_(torch.from_numpy(_keras_to_torch(value)))
    return net.to(device())


def _keras_to_torch(value: np.ndarray) -> np.ndarray:
    if value.ndim == 2:  # Dense (in, out) -> Linear (out, in)
        return np.ascontiguousarray(value.T)
    if value.ndim == 4:  # Conv2D (kh, kw, in, out) -> Conv2d (out, in, kh, kw)
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    return value


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name() -> str:
    return "GPU" if torch.cuda.is_available() else "CPU"


class Trainer:
    """One optimiser step per call, on the batches the shared batch order picks."""

    def __init__(self, model: nn.Module, lr: float) -> None:
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8)
        self.loss_fn = nn.CrossEntropyLoss()

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        self.model.train()
        xb, yb = torch.from_numpy(x).to(device()), torch.from_numpy(y).to(device())
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(xb)
        loss = self.loss_fn(logits, yb)
        loss.backward()
        self.optimizer.step()
        return float(loss.item()), int((logits.argmax(-1) == yb).sum().item())

    @torch.no_grad()
    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        self.model.eval()
        logits = self.model(torch.from_numpy(x).to(device()))
        yb = torch.from_numpy(y).to(device())
        return float(self.loss_fn(logits, yb).item()), float(
            (logits.argmax(-1) == yb).float().mean()
        )


def export(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    """Script the serving wrapper on the CPU (servers pick their device at load time)."""
    serving = Serving(copy.deepcopy(model).cpu()).eval().requires_grad_(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(serving).save(str(path))


def load_predictor(path: Path) -> Any:
    """Load a TorchScript export as a callable numpy -> dict of numpy."""
    module = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def predict(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = module(torch.from_numpy(np.asarray(batch, dtype=np.float32)))
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    return predict


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def framework_version() -> str:
    return str(torch.__version__)


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)


def tensorboard_writer(logdir: Path) -> Any:
    from trainers.tf_quiet import import_tensorflow

    with contextlib.suppress(ImportError):  # tensorboard imports TensorFlow where installed
        import_tensorflow()  # so import it first, without its start-up noise
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))

    def log(step: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            writer.add_scalar(name, value, step)
        writer.flush()

    return log
