"""One training run: train each framework, export, compare, record in the manifest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trainers import compare
from trainers.architecture import ModelSpec, initial_weights, to_model_input
from trainers.data import Dataset, load_dataset
from trainers.exports.archive import build_mar
from trainers.frameworks import frameworks_for, load_framework
from trainers.loop import Hyperparams, TrainedModel, train
from trainers.manifest import (
    DatasetInfo,
    FrameworkArtifact,
    Hyperparameters,
    ModelEntry,
    Signature,
    TensorSpec,
    TorchExport,
    VersionEntry,
    load_or_create_manifest,
    write_manifest,
)
from trainers.report import render_report
from trainers.store import ModelStore, sha256_path, size_bytes

WARMUP_BATCH_SIZES = (1, 8, 32)


@dataclass(frozen=True)
class TrainConfig:
    framework: str = "both"
    arch: str = "mlp"
    dataset: str = "digits"
    data_dir: Path | None = None
    model_store: Path = Path("model_store")
    runs_dir: Path | None = None
    aoti: bool = False
    """Also compile an AOTInductor package (~25 s per model on this machine)."""
    hyperparams: Hyperparams = field(default_factory=Hyperparams)

    @property
    def model_name(self) -> str:
        return f"{self.dataset}-{self.arch}"


def run_training(config: TrainConfig, console: Console) -> VersionEntry:
    """Train, export and record one version of `config.model_name`; returns its entry."""
    data = load_dataset(config.dataset, config.data_dir, config.hyperparams.seed)
    spec = ModelSpec(config.arch, data.image_shape, data.num_classes, data.mean, data.std)
    store = ModelStore(Path(config.model_store))
    with store.lock():
        manifest = load_or_create_manifest(store.root, store.has_artifacts())
        version = store.next_version(manifest, config.model_name)
        console.print(
            f"[bold]{config.model_name}[/] version {version}: {len(data.train)} train / "
            f"{len(data.val)} val / {len(data.test)} test examples, {data.num_classes} classes"
        )
        artifacts, outputs = _train_and_export(config, spec, data, store, version, console)
        entry = _version_entry(config, spec, data, version, artifacts, outputs)
        report = store.report_file(config.model_name, version)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(render_report(config.model_name, entry))
        entry.report = store.relative(report)
        manifest.models.setdefault(config.model_name, ModelEntry()).versions[str(version)] = entry
        write_manifest(store.root, manifest)
    return entry


def _train_and_export(
    config: TrainConfig,
    spec: ModelSpec,
    data: Dataset,
    store: ModelStore,
    version: int,
    console: Console,
) -> tuple[dict[str, FrameworkArtifact], dict[str, dict[str, np.ndarray]]]:
    weights = initial_weights(spec, config.hyperparams.seed)
    x_test = to_model_input(data.test.x, spec.arch)
    artifacts: dict[str, FrameworkArtifact] = {}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for name in frameworks_for(config.framework):
        fw = load_framework(name)
        with _progress(console) as progress:
            logger = _tensorboard(fw, config, version)
            trained = train(fw, spec, data, config.hyperparams, weights, progress, logger)
        artifacts[name] = _export(fw, trained, spec, store, config, version, x_test)
        outputs[name] = fw.load_predictor(store.root / artifacts[name].artifact)(x_test)
        console.print(
            f"  {name}: test accuracy {trained.test_accuracy:.4f}, "
            f"trained in {trained.train_seconds:.1f} s -> {artifacts[name].artifact}"
        )
    return artifacts, outputs


def _export(
    fw: ModuleType,
    trained: TrainedModel,
    spec: ModelSpec,
    store: ModelStore,
    config: TrainConfig,
    version: int,
    x_test: np.ndarray,
) -> FrameworkArtifact:
    model_name = config.model_name
    mar_path: Path | None = None
    exports: dict[str, TorchExport] = {}
    if fw.FRAMEWORK == "tensorflow":
        path = store.tf_dir(model_name, version)
        fw.export(trained.model, spec, path)
        fw.write_warmup_requests(path, model_name, [x_test[:n] for n in WARMUP_BATCH_SIZES])
    else:
        path = store.torch_file(model_name, version)
        fw.export(trained.model, spec, path)
        mar_path = build_mar(
            path, model_name, version, signature_for(spec), store.versioned_mar(model_name, version)
        )
        store.latest_mar(model_name).write_bytes(mar_path.read_bytes())
        from trainers.exports.torch_export import write_exports  # torch only where PyTorch trains

        reference = fw.load_predictor(path)(x_test)
        exports = write_exports(
            trained.model,
            spec,
            store.program_file(model_name, version),
            store,
            x_test,
            reference,
            config.aoti,
        )
    predictor = fw.load_predictor(path)
    return FrameworkArtifact(
        artifact=store.relative(path),
        sha256=sha256_path(path),
        size_bytes=size_bytes(path),
        mar=store.relative(mar_path) if mar_path else None,
        mar_sha256=sha256_path(mar_path) if mar_path else None,
        pt2=exports.get("pt2"),
        aoti=exports.get("aoti"),
        test_accuracy=trained.test_accuracy,
        train_seconds=round(trained.train_seconds, 3),
        param_count=fw.param_count(trained.model),
        framework_version=fw.framework_version(),
        device=fw.device_name(),
        latency_ms=compare.latency_profile(predictor, x_test),
    )


def signature_for(spec: ModelSpec) -> Signature:
    """The wire contract shared by both exports (names, dtypes, shapes; -1 is the batch)."""
    return Signature(
        inputs=[TensorSpec(name="input", dtype="float32", shape=[-1, *spec.input_shape])],
        outputs=[
            TensorSpec(name="probabilities", dtype="float32", shape=[-1, spec.num_classes]),
            TensorSpec(name="class", dtype="int64", shape=[-1]),
        ],
    )


def _version_entry(
    config: TrainConfig,
    spec: ModelSpec,
    data: Dataset,
    version: int,
    artifacts: dict[str, FrameworkArtifact],
    outputs: dict[str, dict[str, np.ndarray]],
) -> VersionEntry:
    hp = config.hyperparams
    agreement = None
    if len(outputs) == 2:
        agreement = compare.agreement(outputs["tensorflow"], outputs["pytorch"])
    return VersionEntry(
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        arch=spec.arch,
        dataset=DatasetInfo(
            name=data.name,
            fingerprint=data.fingerprint,
            train=len(data.train),
            val=len(data.val),
            test=len(data.test),
            mean=data.mean,
            std=data.std,
        ),
        classes=list(range(data.num_classes)),
        signature=signature_for(spec),
        hyperparameters=Hyperparameters(
            epochs=hp.epochs, batch_size=hp.batch_size, lr=hp.lr, seed=hp.seed
        ),
        frameworks=artifacts,  # type: ignore[arg-type]
        agreement=agreement,
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )


def _tensorboard(
    fw: ModuleType, config: TrainConfig, version: int
) -> Callable[[int, dict[str, float]], None] | None:
    if config.runs_dir is None:
        return None
    # One folder per version, one sub-folder per framework: one TensorBoard compares both.
    return fw.tensorboard_writer(
        Path(config.runs_dir) / f"{config.model_name}-v{version}" / fw.FRAMEWORK
    )
