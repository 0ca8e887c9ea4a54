"""The capture store on disk: the schema pandas opens, rotation by size, age and schema,
retention by age and total size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gateway.capture.files import CaptureFiles
from gateway.capture.reader import read_capture
from gateway.capture.records import INPUT, OUTPUT, CaptureRecord, tensors_of


def record(i: int, batch: int = 1, model: str = "digits-mlp", error: bool = False) -> CaptureRecord:
    rng = np.random.default_rng(i)
    x = rng.random((batch, 64), dtype=np.float32) * 16
    probs = rng.dirichlet(np.ones(10), size=batch).astype(np.float32)
    outputs = None if error else {"probabilities": probs, "class": probs.argmax(1).astype(np.int64)}
    return CaptureRecord(
        f"id-{i}", 1_700_000_000.0 + i, model, "tensorflow", 1, f"user-{i % 7}", 0.0025,
        503 if error else 200, "UpstreamUnavailable" if error else None, False, {"input": x},
        outputs,
    )  # fmt: skip


def store(tmp_path: Path, **kwargs: float) -> CaptureFiles:
    settings = {"max_file_bytes": 1 << 30, "max_file_age_s": 3600.0, "retention_s": 1e9}
    settings |= kwargs
    return CaptureFiles(
        tmp_path, int(settings["max_file_bytes"]), settings["max_file_age_s"],
        settings["retention_s"], None,
    )  # fmt: skip


def test_pandas_opens_the_files_and_the_tensors_come_back_equal(tmp_path: Path) -> None:
    files = store(tmp_path)
    records = [record(i, batch=1 + i % 3) for i in range(20)] + [record(99, error=True)]
    assert files.write(records) == 21
    files.close_all()
    paths = sorted(tmp_path.glob("digits-mlp/*.parquet"))
    assert len(paths) == 1 and not list(tmp_path.rglob("*.part"))
    frame = pd.read_parquet(paths[0])  # pandas, through pyarrow
    assert list(frame["request_id"]) == [r.request_id for r in records]
    assert frame["status"].tolist() == [200] * 20 + [503]
    assert frame["latency_ms"].tolist() == [2.5] * 21
    assert frame["output.probabilities"].isna().tolist() == [False] * 20 + [True]
    for row, rec in zip(frame.to_dict("records"), records, strict=True):
        x = tensors_of(row, INPUT)["input"]
        assert x.dtype == np.float32 and np.array_equal(x, rec.inputs["input"])
        if rec.outputs is not None:
            out = tensors_of(row, OUTPUT)
            assert np.array_equal(out["probabilities"], rec.outputs["probabilities"])
            assert np.array_equal(out["class"], rec.outputs["class"])
    assert read_capture(tmp_path).shape[0] == 21


def test_an_error_alone_first_then_answers_share_one_file(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.write([record(1)])
    files.write([record(2, error=True)])  # conformed: null outputs in the file's schema
    files.write([record(3)])
    files.close_all()
    assert len(list(tmp_path.glob("*/*.parquet"))) == 1


def test_a_file_past_its_size_is_closed_and_another_begun(tmp_path: Path) -> None:
    files = store(tmp_path, max_file_bytes=4096)
    for i in range(12):
        files.write([record(i, batch=8)])  # ~2.5 KB of raw floats a write
    files.close_all()
    paths = list(tmp_path.glob("*/*.parquet"))
    assert len(paths) >= 3
    assert sum(pd.read_parquet(p).shape[0] for p in paths) == 12


def test_a_file_past_its_age_is_closed_at_the_next_tick(tmp_path: Path) -> None:
    files = store(tmp_path, max_file_age_s=0.05)
    files.write([record(1)])
    files.tick()
    assert list(tmp_path.rglob("*.part"))  # still young
    deadline = time.monotonic() + 5
    while list(tmp_path.rglob("*.part")) and time.monotonic() < deadline:
        files.tick()
    assert not list(tmp_path.rglob("*.part")) and len(list(tmp_path.glob("*/*.parquet"))) == 1


def test_another_input_signature_begins_another_file(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.write([record(1)])
    other = record(2)
    other.inputs = {"input": other.inputs["input"].astype(np.float64)}
    files.write([other])
    files.close_all()
    assert len(list(tmp_path.glob("*/*.parquet"))) == 2


def test_retention_deletes_files_past_their_age_then_the_oldest_past_the_cap(
    tmp_path: Path,
) -> None:
    files = store(tmp_path)
    for i in range(4):
        files.write([record(i, batch=4)])
        files.close_all()
    paths = files.closed_files()
    assert len(paths) == 4
    now = time.time()
    for age_h, path in zip((50, 30, 2, 1), paths, strict=True):
        os.utime(path, (now - age_h * 3600, now - age_h * 3600))
    aged = CaptureFiles(tmp_path, 1 << 30, 3600.0, 24 * 3600.0, None)
    aged.retain(force=True)
    left = aged.closed_files()
    assert left == paths[2:] and aged.files_deleted == 2
    capped = CaptureFiles(tmp_path, 1 << 30, 3600.0, 24 * 3600.0, left[1].stat().st_size + 1)
    capped.retain(force=True)
    assert capped.closed_files() == [paths[3]]


def test_a_missing_pyarrow_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pyarrow"):
        store(tmp_path)
