"""Data loading: the bundled digits split and the IDX reader on files the tests write."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from trainers.data import IDX_FILES, load_dataset, parse_idx, read_idx, write_idx
from trainers.errors import DataError


def test_digits_split_is_deterministic_and_disjoint() -> None:
    first, second = load_dataset("digits", seed=0), load_dataset("digits", seed=0)
    assert first.fingerprint == second.fingerprint
    np.testing.assert_array_equal(first.test.x, second.test.x)
    assert len(first.train) + len(first.val) + len(first.test) == 1797
    assert first.num_classes == 10 and first.image_shape == (8, 8)
    # Raw pixel values, as the data set stores them: digits are 0..16.
    assert first.train.x.min() == 0 and first.train.x.max() == 16
    rows = {row.tobytes() for row in first.test.x}
    assert sum(row.tobytes() in rows for row in first.train.x) < 10  # digits has a few duplicates


def test_other_seed_gives_another_split() -> None:
    assert load_dataset("digits", seed=0).fingerprint != load_dataset("digits", seed=1).fingerprint


def test_batch_orders_are_shared_permutations() -> None:
    data = load_dataset("digits")
    orders = data.batch_orders(epochs=3, seed=7)
    again = data.batch_orders(epochs=3, seed=7)
    assert len(orders) == 3
    for order, same in zip(orders, again, strict=True):
        np.testing.assert_array_equal(order, same)
        np.testing.assert_array_equal(np.sort(order), np.arange(len(data.train)))
    assert not np.array_equal(orders[0], orders[1])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"images{suffix}"
    write_idx(path, images)
    np.testing.assert_array_equal(read_idx(path), images)


def test_idx_wrong_magic_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="bad: not an IDX file \\(bad magic number 12340801\\)"):
        read_idx(path)


def test_idx_truncated_data_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "short"
    write_idx(path, np.zeros((10, 4, 4), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"short: truncated: shape \(10, 4, 4\) needs 160"):
        read_idx(path)


def test_idx_truncated_header_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"truncated header"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00\x00\x01", "x")
    with pytest.raises(DataError, match=r"bad magic number empty"):
        parse_idx(b"", "x")


def test_idx_corrupt_gzip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04abcd")[:-6])
    with pytest.raises(DataError, match=r"broken\.gz: cannot read"):
        read_idx(path)


def _write_mnist_like(folder: Path, n_train: int = 120, n_test: int = 40, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    sizes = {"train": n_train, "test": n_test}
    for key, stem in IDX_FILES.items():
        part, kind = key.split("_")
        n = sizes[part]
        suffix = ".gz" if gz else ""
        if kind == "images":
            write_idx(folder / f"{stem}{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        else:
            write_idx(folder / f"{stem}{suffix}", (np.arange(n) % 10).astype(np.uint8))


def test_mnist_idx_directory_loads(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path)
    data = load_dataset("mnist", tmp_path)
    assert data.image_shape == (28, 28) and data.num_classes == 10
    assert len(data.test) == 40 and len(data.train) + len(data.val) == 120
    assert data.train.x.max() <= 255 and data.train.x.dtype == np.float32


def test_missing_idx_file_is_named(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing IDX file t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", tmp_path)


def test_idx_dataset_needs_data_dir() -> None:
    with pytest.raises(DataError, match="--data-dir is required for --dataset mnist"):
        load_dataset("mnist")


def test_label_count_mismatch_is_reported(tmp_path: Path) -> None:
    _write_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match="120 images but 7 labels"):
        load_dataset("mnist", tmp_path)
