"""Triton's model repositories for the PyTorch arm: configs Triton's own proto accepts,
the platforms and batching limits the docs give, artifacts copied only when verified."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from deploy import render, triton
from tests.unit.backends.oip.test_oip_repository import PARITY, _entry
from trainers.manifest import Manifest, ModelEntry, TorchExport, write_manifest

DIGITS = {"digits-mlp": [64], "digits-cnn": [8, 8, 1]}


@pytest.mark.parametrize("model", DIGITS)
def test_libtorch_configs_batch_dynamically_with_the_contracts_names(model: str) -> None:
    path = render.DEPLOY / "triton" / "libtorch" / model / "config.pbtxt"
    config = triton.validate(path.read_text())  # Triton's model_config.proto parses it
    assert config.name == model and config.platform == "pytorch_libtorch"
    assert config.default_model_filename == "model.pt"
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    assert [(i.name, list(i.dims)) for i in config.input] == [("input", DIGITS[model])]
    outputs = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    assert outputs == {"probabilities": (11, [10]), "class": (9, [1])}  # TYPE_FP32, TYPE_INT64
    assert config.version_policy.latest.num_versions == 2


@pytest.mark.parametrize("model", DIGITS)
def test_torch_aoti_configs_do_not_batch(model: str) -> None:
    """Triton 26.03's `torch_aoti` platform has no batching: max_batch_size 0, -1 in dims."""
    path = render.DEPLOY / "triton" / "aoti" / model / "config.pbtxt"
    config = triton.validate(path.read_text())
    assert config.platform == "torch_aoti" and config.default_model_filename == "model.pt2"
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, *DIGITS[model]]
    assert [list(o.dims) for o in config.output] == [[-1, 10], [-1]]


def test_a_misspelt_field_does_not_validate() -> None:
    good = (render.DEPLOY / "triton" / "aoti" / "digits-mlp" / "config.pbtxt").read_text()
    with pytest.raises(Exception, match="max_batch_sise"):
        triton.validate(good.replace("max_batch_size", "max_batch_sise"))


def _store(root: Path, aoti_device: str | None = None) -> Path:
    root.mkdir(parents=True)
    artifact = root / "torch/m/1/model.pt"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"torchscript")
    entry = _entry(1, "torch/m/1/model.pt2", "0")
    pytorch = entry.frameworks["pytorch"]
    pytorch.artifact, pytorch.sha256 = (
        "torch/m/1/model.pt",
        hashlib.sha256(b"torchscript").hexdigest(),
    )
    if aoti_device:
        package = root / f"torch/m/1/model.{aoti_device}.aoti.pt2"
        package.write_bytes(b"package")
        pytorch.aoti = TorchExport(
            kind="aoti_package", artifact=str(package.relative_to(root)), device=aoti_device,
            sha256=hashlib.sha256(b"package").hexdigest(), size_bytes=7, parity=PARITY,
        )  # fmt: skip
    write_manifest(root, Manifest(models={"m": ModelEntry(versions={"1": entry})}))
    return root


def test_populate_copies_verified_artifacts_into_the_layout(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", aoti_device="cuda")
    written = triton.populate(store, tmp_path / "repo", "libtorch")
    assert written == [tmp_path / "repo/m/1/model.pt"] and written[0].read_bytes() == b"torchscript"
    assert triton.validate((tmp_path / "repo/m/config.pbtxt").read_text()).name == "m"
    assert triton.populate(store, tmp_path / "aoti", "aoti") == [tmp_path / "aoti/m/1/model.pt2"]
    (store / "torch/m/1/model.pt").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its recorded sha256"):
        triton.populate(store, tmp_path / "again", "libtorch")


def test_a_cpu_package_is_not_put_in_the_gpu_repository(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", aoti_device="cpu")
    with pytest.raises(ValueError, match="compiled for cpu"):
        triton.populate(store, tmp_path / "repo", "aoti")
    shutil.rmtree(tmp_path / "store")
