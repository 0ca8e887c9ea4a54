"""A real (short, default) training run of both frameworks, and what it exports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trainers.architecture import to_model_input
from trainers.data import load_dataset
from trainers.manifest import load_manifest
from trainers.store import sha256_path

REPO = Path(__file__).resolve().parents[3]
THRESHOLDS = {"digits-mlp": 0.95, "digits-cnn": 0.96}


@pytest.mark.parametrize("model", ["digits-mlp", "digits-cnn"])
def test_accuracy_and_agreement_meet_the_bar(trained_store: Path, model: str) -> None:
    entry = load_manifest(trained_store).models[model].versions["1"]
    for framework in ("tensorflow", "pytorch"):
        assert entry.frameworks[framework].test_accuracy >= THRESHOLDS[model], framework
    assert entry.agreement is not None and entry.agreement.top1 >= 0.97
    assert entry.frameworks["tensorflow"].param_count == entry.frameworks["pytorch"].param_count
    report = (trained_store / entry.report).read_text()  # type: ignore[operator]
    assert "equal top-1 predictions" in report and "latency batch 32" in report


@pytest.mark.parametrize(("model", "arch"), [("digits-mlp", "mlp"), ("digits-cnn", "cnn")])
def test_exports_load_and_share_the_output_contract(
    trained_store: Path, model: str, arch: str
) -> None:
    import tensorflow as tf
    import torch

    entry = load_manifest(trained_store).models[model].versions["1"]
    x = to_model_input(load_dataset("digits").test.x[:7], arch)
    signature = tf.saved_model.load(str(trained_store / entry.frameworks["tensorflow"].artifact))
    tf_out = {
        k: v.numpy()
        for k, v in signature.signatures["serving_default"](input=tf.constant(x)).items()
    }
    scripted = torch.jit.load(str(trained_store / entry.frameworks["pytorch"].artifact))
    torch_out = {k: v.numpy() for k, v in scripted(torch.from_numpy(x)).items()}
    assert set(tf_out) == set(torch_out) == {"probabilities", "class"}
    for name in tf_out:
        assert tf_out[name].dtype == torch_out[name].dtype, name
        assert tf_out[name].shape == torch_out[name].shape, name
    assert tf_out["class"].dtype == np.int64 and tf_out["probabilities"].shape == (7, 10)
    np.testing.assert_allclose(tf_out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    declared = {t.name: t.shape for t in entry.signature.inputs}
    assert declared == {"input": [-1, *x.shape[1:]]}


def test_tf_serving_layout_and_warmup_records(trained_store: Path) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    version_dir = trained_store / "tensorflow" / "digits-cnn" / "1"
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables").is_dir()
    warmup = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    records = [
        prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        for raw in tf.data.TFRecordDataset(str(warmup))
    ]
    assert len(records) == 3
    request = records[0].predict_log.request
    assert request.model_spec.name == "digits-cnn"
    assert list(tf.make_ndarray(request.inputs["input"]).shape) == [1, 8, 8, 1]


def test_mar_holds_torchscript_handler_and_manifest(trained_store: Path) -> None:
    entry = load_manifest(trained_store).models["digits-mlp"].versions["1"]
    mar = trained_store / entry.frameworks["pytorch"].mar  # type: ignore[operator]
    assert sha256_path(mar) == entry.frameworks["pytorch"].mar_sha256
    assert (trained_store / "torchserve" / "digits-mlp.mar").read_bytes() == mar.read_bytes()
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
        assert {
            "model.pt",
            "handler.py",
            "tensor_frames.py",
            "tfserving_json.py",
            "json_text.py",
            "signature.json",
            "MAR-INF/MANIFEST.json",
        } <= names
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        signature = json.loads(archive.read("signature.json"))
    assert manifest["model"]["modelName"] == "digits-mlp"
    assert manifest["model"]["modelVersion"] == "1"
    assert manifest["model"]["serializedFile"] == "model.pt"
    assert manifest["model"]["handler"] == "handler.py"
    assert signature["inputs"][0] == {"name": "input", "dtype": "float32", "shape": [-1, 64]}


def test_artifact_hashes_match_the_manifest(trained_store: Path) -> None:
    for model in load_manifest(trained_store).models.values():
        for entry in model.versions.values():
            for artifact in entry.frameworks.values():
                assert sha256_path(trained_store / artifact.artifact) == artifact.sha256


@pytest.mark.parametrize(("model", "arch"), [("digits-mlp", "mlp"), ("digits-cnn", "cnn")])
def test_pt2_program_is_recorded_with_its_parity(
    trained_store: Path, model: str, arch: str
) -> None:
    import torch

    pytorch = load_manifest(trained_store).models[model].versions["1"].frameworks["pytorch"]
    assert pytorch.pt2 is not None and pytorch.aoti is None  # AOTInductor only on --aoti
    assert pytorch.pt2.artifact == f"torch/{model}/1/model.pt2"
    assert sha256_path(trained_store / pytorch.pt2.artifact) == pytorch.pt2.sha256
    test = load_dataset("digits").test
    assert pytorch.pt2.parity.examples == len(test.y) and pytorch.pt2.parity.classes_equal
    assert pytorch.pt2.parity.max_abs_prob_diff <= 1e-5
    entry = load_manifest(trained_store).models[model].versions["1"]
    report = (trained_store / entry.report).read_text()  # type: ignore[operator]
    assert f"`{pytorch.pt2.artifact}` (exported_program, cpu): classes equal True" in report
    # independently of the trainers' own check: the program against TorchScript
    x = torch.from_numpy(to_model_input(test.x, arch))
    program = torch.export.load(str(trained_store / pytorch.pt2.artifact)).module()
    scripted = torch.jit.load(str(trained_store / pytorch.artifact))
    got, want = program(x), scripted(x)
    assert torch.equal(got["class"], want["class"])
    torch.testing.assert_close(got["probabilities"], want["probabilities"], atol=1e-5, rtol=0)


def test_aoti_package_on_request_runs_with_parity(tmp_path: Path) -> None:
    """--aoti compiles the AOTInductor package (~25 s with g++ on this machine)."""
    from trainers.exports.torch_export import as_predictor, load_aoti

    result = _train(tmp_path, "--framework", "torch", "--epochs", "1", "--aoti")
    assert result.returncode == 0, result.stderr
    pytorch = load_manifest(tmp_path).models["digits-mlp"].versions["1"].frameworks["pytorch"]
    assert pytorch.aoti is not None and pytorch.aoti.device == "cpu"
    assert pytorch.aoti.artifact == "torch/digits-mlp/1/model.cpu.aoti.pt2"
    x = to_model_input(load_dataset("digits").test.x[:9], "mlp")
    runner = load_aoti(tmp_path / pytorch.aoti.artifact, pytorch.aoti.sha256)
    got = as_predictor(runner)(x)
    np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert pytorch.aoti.parity.classes_equal and pytorch.aoti.parity.max_abs_prob_diff <= 1e-5


def _train(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trainers", "--model-store", str(store), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


def test_retraining_adds_a_version_and_keeps_the_old_one(
    trained_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained_store, store)
    before = load_manifest(store).models["digits-mlp"].versions["1"]
    result = _train(store, "--framework", "torch", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    after = load_manifest(store).models["digits-mlp"]
    assert sorted(after.versions, key=int) == ["1", "2"]
    assert after.versions["1"] == before
    assert (
        sha256_path(store / before.frameworks["pytorch"].artifact)
        == before.frameworks["pytorch"].sha256
    )
    assert (store / "torch" / "digits-mlp" / "2" / "model.pt").is_file()
    assert "digits-cnn" in load_manifest(store).models


def test_corrupt_manifest_stops_training_and_is_kept(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{oops")
    result = _train(tmp_path, "--framework", "torch", "--epochs", "1")
    assert result.returncode == 2
    assert "manifest.json is corrupt" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert (tmp_path / "manifest.json").read_text() == "{oops"


def test_missing_idx_files_are_named_on_the_command_line(tmp_path: Path) -> None:
    result = _train(tmp_path, "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "missing IDX file train-images-idx3-ubyte" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_idx_dataset_trains_end_to_end(tmp_path: Path) -> None:
    from trainers.data import IDX_FILES, write_idx

    rng = np.random.default_rng(1)
    for key, stem in IDX_FILES.items():
        n = 100 if key.startswith("train") else 30
        if key.endswith("images"):
            write_idx(tmp_path / f"{stem}.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        else:
            write_idx(tmp_path / f"{stem}.gz", (np.arange(n) % 10).astype(np.uint8))
    store = tmp_path / "store"
    result = _train(store, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path),
                    "--model", "cnn", "--epochs", "1", "--framework", "torch")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    entry = load_manifest(store).models["fashion-mnist-cnn"].versions["1"]
    assert entry.signature.inputs[0].shape == [-1, 28, 28, 1]
