"""The training comparison report: Markdown in the store, a rich table on the terminal."""

from __future__ import annotations

from rich.table import Table

from trainers.manifest import FrameworkArtifact, VersionEntry

_ROWS: list[tuple[str, str]] = [
    ("test accuracy", "{a.test_accuracy:.4f}"),
    ("training time (s)", "{a.train_seconds:.1f}"),
    ("parameters", "{a.param_count:,}"),
    ("artifact size (KiB)", "{kib:.1f}"),
    ("latency batch 1 (ms, median)", "{lat1:.3f}"),
    ("latency batch 32 (ms, median)", "{lat32:.3f}"),
    ("framework version", "{a.framework_version}"),
    ("device", "{a.device}"),
]


def _cells(artifact: FrameworkArtifact) -> list[str]:
    values = {
        "a": artifact,
        "kib": artifact.size_bytes / 1024,
        "lat1": artifact.latency_ms.get("batch_1", float("nan")),
        "lat32": artifact.latency_ms.get("batch_32", float("nan")),
    }
    return [template.format(**values) for _, template in _ROWS]


def render_report(model_name: str, entry: VersionEntry) -> str:
    """Markdown: one column per framework, then cross-framework agreement."""
    frameworks = list(entry.frameworks)
    columns = {name: _cells(entry.frameworks[name]) for name in frameworks}
    hp = entry.hyperparameters
    lines = [
        f"# {model_name} v{entry.version}: TensorFlow vs PyTorch",
        "",
        f"Data set `{entry.dataset.name}` ({entry.dataset.train} train / {entry.dataset.val} "
        f"val / {entry.dataset.test} test, fingerprint `{entry.dataset.fingerprint[:12]}`), "
        f"architecture `{entry.arch}`, {hp.epochs} epochs, batch {hp.batch_size}, "
        f"Adam lr {hp.lr}, seed {hp.seed}; both builds start from the same initial weights "
        "and see the same batches in the same order.",
        "",
        "| | " + " | ".join(frameworks) + " |",
        "|---|" + "---:|" * len(frameworks),
    ]
    for row, (label, _) in enumerate(_ROWS):
        lines.append(f"| {label} | " + " | ".join(columns[f][row] for f in frameworks) + " |")
    lines.append("")
    if entry.agreement is not None:
        lines += [
            "## Cross-framework agreement on the test set",
            "",
            f"- equal top-1 predictions: {entry.agreement.top1:.2%}",
            f"- largest absolute probability difference: {entry.agreement.max_abs_prob_diff:.4g}",
            "",
        ]
    lines += _export_lines(entry)
    lines.append(f"Created {entry.created}.")
    return "\n".join(lines) + "\n"


def _export_lines(entry: VersionEntry) -> list[str]:
    """The `torch.export` exports and their parity with TorchScript, when there are some."""
    pytorch = entry.frameworks.get("pytorch")
    exports = [e for e in (pytorch.pt2, pytorch.aoti) if e is not None] if pytorch else []
    if not exports:
        return []
    lines = ["## `torch.export` exports against TorchScript (whole test set)", ""]
    for export in exports:
        p = export.parity
        lines.append(
            f"- `{export.artifact}` ({export.kind}, {export.device}): classes equal"
            f" {p.classes_equal}, largest |Δp| {p.max_abs_prob_diff:.3g}"
            f" (tolerance {p.tolerance:g})"
        )
    return [*lines, ""]


def pt2_caption(entry: VersionEntry) -> str:
    """One line for the terminal: each export's parity (empty without exports)."""
    pytorch = entry.frameworks.get("pytorch")
    exports = [e for e in (pytorch.pt2, pytorch.aoti) if e is not None] if pytorch else []
    return "; ".join(f"{e.kind} parity max |Δp| {e.parity.max_abs_prob_diff:.3g}" for e in exports)


def summary_table(model_name: str, entry: VersionEntry) -> Table:
    table = Table(title=f"{model_name} v{entry.version}")
    table.add_column("")
    frameworks = list(entry.frameworks)
    for name in frameworks:
        table.add_column(name, justify="right")
    columns = {name: _cells(entry.frameworks[name]) for name in frameworks}
    for row, (label, _) in enumerate(_ROWS):
        table.add_row(label, *(columns[f][row] for f in frameworks))
    captions = [pt2_caption(entry)]
    if entry.agreement is not None:
        captions.insert(
            0,
            f"top-1 agreement {entry.agreement.top1:.2%}, "
            f"max |Δp| {entry.agreement.max_abs_prob_diff:.3g}",
        )
    table.caption = "\n".join(c for c in captions if c) or None
    return table
