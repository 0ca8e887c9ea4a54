"""The `torch.export` exports of the PyTorch build, beside its TorchScript file.

TorchScript is deprecated in favour of `torch.export` (torch 2.13's docs), and TorchServe,
which serves the TorchScript `.mar`, was archived in August 2025. The maintained serving
paths load one of these two instead:

- the **ExportedProgram** (`model.pt2`, `torch.export.save`): the serving module traced
  with a dynamic batch dimension (`BATCH`, 1..65536); it runs anywhere torch runs, through
  `torch.export.load(path).module()`. The project's OIP server (`backends/oip/`) serves it.
  Measured on this 2-core machine: 2.4 s for the first export in a process, 0.2 s after.
- the **AOTInductor package** (`model.<device>.aoti.pt2`,
  `torch._inductor.aoti_compile_and_package`): the program compiled to a shared library
  for one device by the machine's C++ compiler (~25 s here), what Triton's `torch_aoti`
  platform loads. Optional (`python -m trainers --aoti`), since the compile is slow and
  the package runs only on the device it was compiled for.

Both are checked against the TorchScript export on the whole test set before they are
recorded (`parity`: the same classes, probabilities within `PARITY_TOLERANCE`); a failed
check is an error, never a silent export. `torch.export.load` unpickles, so it is unsafe on
untrusted files: `load_program` reads only a file whose sha256 matches the manifest's.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.architecture import ModelSpec
from trainers.errors import TrainerError
from trainers.manifest import ExportParity, TorchExport
from trainers.store import ModelStore, sha256_path, size_bytes
from trainers.torch_model import Serving

PARITY_TOLERANCE = 1e-5
"""Largest absolute probability difference allowed between an export and TorchScript."""
BATCH = torch.export.Dim("batch", min=1, max=1 << 16)
"""The dynamic batch dimension of the exported program (the OIP and Triton wire allow any)."""
Predictor = Callable[[np.ndarray], dict[str, np.ndarray]]


def export_program(serving: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    """Trace `serving` (the `Serving` wrapper, on the CPU, in eval mode) with a dynamic
    batch and save the ExportedProgram to `path`.

    Args:
        serving: takes `input` float32 `[batch, *input_shape]`, returns the dict of
            `probabilities` float32 `[batch, classes]` and `class` int64 `[batch]`.
        input_shape: one example's shape (`[64]` for the digits MLP, `[8, 8, 1]` the CNN).
    """
    module = copy.deepcopy(serving).cpu().eval().requires_grad_(False)
    example = (torch.zeros(2, *input_shape, dtype=torch.float32),)
    program = torch.export.export(module, example, dynamic_shapes={"input": {0: BATCH}})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))


def compiler_available() -> bool:
    """Whether a C++ compiler AOTInductor can use is on PATH (`CXX`, `g++`, `c++`, `clang++`)."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def compile_aoti(program_path: Path, package_path: Path) -> None:
    """Compile the saved ExportedProgram at `program_path` into an AOTInductor package
    for this process's device (CPU here); ~25 s on this machine.

    Raises:
        TrainerError: no C++ compiler is on PATH.
    """
    if not compiler_available():
        raise TrainerError("--aoti needs a C++ compiler (g++, c++ or clang++) on PATH")
    from torch._inductor import aoti_compile_and_package

    program = torch.export.load(str(program_path))  # written by this run, just above
    package_path.parent.mkdir(parents=True, exist_ok=True)
    aoti_compile_and_package(program, package_path=str(package_path))


def verify(path: Path, expected_sha256: str) -> None:
    """Refuse a file whose sha256 is not the recorded one.

    Raises:
        TrainerError: naming the file and both digests' first characters.
    """
    actual = sha256_path(path)
    if actual != expected_sha256:
        raise TrainerError(
            f"{path} does not match its recorded sha256 (recorded {expected_sha256[:12]}...,"
            f" found {actual[:12]}...); refusing to load it (torch.export.load unpickles)"
        )


def load_program(path: Path, expected_sha256: str) -> Any:
    """The ExportedProgram's module, after its sha256 was checked (`verify`).

    Raises:
        TrainerError: the file does not match `expected_sha256`.
    """
    verify(path, expected_sha256)
    return torch.export.load(str(path)).module()


def load_aoti(path: Path, expected_sha256: str) -> Any:
    """The AOTInductor package's runner, after its sha256 was checked (`verify`)."""
    verify(path, expected_sha256)
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))


def as_predictor(module: Any) -> Predictor:
    """numpy float32 `[batch, ...]` in, dict of numpy arrays out."""

    @torch.no_grad()
    def predict(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return {name: tensor.detach().cpu().numpy() for name, tensor in outputs.items()}

    return predict


def parity(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> ExportParity:
    """Compare an export's outputs with TorchScript's on the same inputs.

    Raises:
        TrainerError: a class differs or a probability differs by more than
            `PARITY_TOLERANCE`.
    """
    diff = float(np.max(np.abs(reference["probabilities"] - candidate["probabilities"])))
    classes_equal = bool(np.array_equal(reference["class"], candidate["class"]))
    result = ExportParity(
        examples=len(reference["class"]),
        max_abs_prob_diff=diff,
        classes_equal=classes_equal,
        tolerance=PARITY_TOLERANCE,
    )
    if not classes_equal or diff > PARITY_TOLERANCE:
        raise TrainerError(
            f"export parity failed against TorchScript: max |dp| {diff:.3g} "
            f"(tolerance {PARITY_TOLERANCE}), classes equal: {classes_equal}"
        )
    return result


def write_exports(
    model: nn.Module,
    spec: ModelSpec,
    program_path: Path,
    store: ModelStore,
    x_test: np.ndarray,
    reference: dict[str, np.ndarray],
    aoti: bool,
) -> dict[str, TorchExport]:
    """Write the ExportedProgram (and, when `aoti`, the AOTInductor package for this
    process's device) beside the TorchScript file, each checked against `reference`
    (TorchScript's outputs on `x_test`, the whole test set).

    Returns:
        `{"pt2": ..., "aoti": ...}` (`aoti` only when asked), ready for the manifest.

    Raises:
        TrainerError: a parity check failed, or `aoti` without a C++ compiler.
    """
    export_program(Serving(model), tuple(spec.input_shape), program_path)
    digest = sha256_path(program_path)
    found = parity(reference, as_predictor(load_program(program_path, digest))(x_test))
    exports = {"pt2": _record(store, "exported_program", program_path, "cpu", found)}
    if aoti:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        package = program_path.with_name(f"model.{device}.aoti.pt2")
        compile_aoti(program_path, package)
        runner = load_aoti(package, sha256_path(package))
        found = parity(reference, as_predictor(runner)(x_test))
        exports["aoti"] = _record(store, "aoti_package", package, device, found)
    return exports


def _record(
    store: ModelStore, kind: str, path: Path, device: str, found: ExportParity
) -> TorchExport:
    return TorchExport(
        kind=kind,  # type: ignore[arg-type]
        artifact=store.relative(path),
        sha256=sha256_path(path),
        size_bytes=size_bytes(path),
        device=device,
        parity=found,
    )
