"""Data sets for the trainers: one deterministic split shared by both frameworks.

The default is scikit-learn's bundled digits (no download). MNIST and Fashion-MNIST are
read from IDX files the user supplies; nothing is fetched at run time.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from trainers.errors import DataError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_DATASETS = ("mnist", "fashion-mnist")
DATASETS = ("digits", *IDX_DATASETS)

# IDX type codes (third byte of the magic number) -> numpy dtype, big-endian.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class Split:
    """Raw pixel images (N, H, W) as float32 and int64 labels for one partition."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A data set split once, identically for both frameworks.

    Images keep the pixel values the data set stores (digits 0-16, MNIST 0-255);
    `mean` and `std` are scalars from the training split, baked into both exported
    models so that clients send raw pixels.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: float
    std: float
    fingerprint: str

    @property
    def image_shape(self) -> tuple[int, int]:
        h, w = self.train.x.shape[1:3]
        return int(h), int(w)

    def batch_orders(self, epochs: int, seed: int) -> list[np.ndarray]:
        """One permutation of training indices per epoch, the same for both frameworks."""
        rng = np.random.default_rng(seed)
        return [rng.permutation(len(self.train)) for _ in range(epochs)]


def load_dataset(name: str = "digits", data_dir: Path | None = None, seed: int = 0) -> Dataset:
    """Load a data set by name and split it deterministically from `seed`."""
    if name == "digits":
        x, y = _load_digits()
        return _split(name, x, y, seed)
    if name in IDX_DATASETS:
        if data_dir is None:
            raise DataError(f"--data-dir is required for --dataset {name}")
        return _load_idx_dataset(name, Path(data_dir), seed)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def _split(name: str, x: np.ndarray, y: np.ndarray, seed: int) -> Dataset:
    """72/8/20 stratified train/validation/test split."""
    x_rest, x_test, y_rest, y_test = _holdout(x, y, 0.2, seed)
    x_train, x_val, y_train, y_val = _holdout(x_rest, y_rest, 0.1, seed)
    return _make_dataset(name, Split(x_train, y_train), Split(x_val, y_val), Split(x_test, y_test))


def _holdout(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `fraction` of (x, y), stratified by class when every class can be."""
    classes, counts = np.unique(y, return_counts=True)
    held = int(np.ceil(fraction * len(y)))
    if len(y) < 2 or held >= len(y):
        raise DataError(f"too few examples ({len(y)}) to hold out {fraction:.0%} of them")
    stratify = y if counts.min() >= 2 and min(held, len(y) - held) >= len(classes) else None
    parts = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)
    return parts[0], parts[1], parts[2], parts[3]


def _make_dataset(name: str, train: Split, val: Split, test: Split) -> Dataset:
    digest = hashlib.sha256()
    for part in (train, val, test):
        digest.update(np.ascontiguousarray(part.x).tobytes())
        digest.update(np.ascontiguousarray(part.y).tobytes())
    num_classes = int(max(train.y.max(), val.y.max(), test.y.max())) + 1
    return Dataset(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        mean=float(train.x.mean()),
        std=float(train.x.std()) or 1.0,
        fingerprint=digest.hexdigest(),
    )


def _load_idx_dataset(name: str, data_dir: Path, seed: int) -> Dataset:
    arrays = {key: read_idx(find_idx_file(data_dir, stem)) for key, stem in IDX_FILES.items()}
    for part in ("train", "test"):
        n_img, n_lab = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_img != n_lab:
            raise DataError(f"{name} {part}: {n_img} images but {n_lab} labels in {data_dir}")
    train_x = arrays["train_images"].astype(np.float32)
    train_y = arrays["train_labels"].astype(np.int64)
    # The IDX test set is kept as the test set; validation is carved from training.
    x_train, x_val, y_train, y_val = _holdout(train_x, train_y, 1 / 12, seed)
    test = Split(arrays["test_images"].astype(np.float32), arrays["test_labels"].astype(np.int64))
    return _make_dataset(name, Split(x_train, y_train), Split(x_val, y_val), test)


def find_idx_file(data_dir: Path, stem: str) -> Path:
    """Find `stem` or `stem.gz` in `data_dir` (also accepting the common `.` -> `-` variant)."""
    candidates = [stem, stem.replace("-idx", ".idx")]
    for candidate in candidates:
        for suffix in ("", ".gz"):
            path = data_dir / f"{candidate}{suffix}"
            if path.is_file():
                return path
    raise DataError(f"missing IDX file {stem}[.gz] in {data_dir}")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path.name}: cannot read ({exc})") from exc
    return parse_idx(raw, path.name)


def parse_idx(raw: bytes, label: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes: magic (0, 0, type, ndim), ndim big-endian uint32 sizes, data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{label}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{label}: truncated header ({len(raw)} bytes, need {header_end})")
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header_end], dtype=">u4"))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    available = len(raw) - header_end
    if available != expected:
        kind = "truncated" if available < expected else "has trailing bytes"
        raise DataError(
            f"{label}: {kind}: shape {shape} needs {expected} data bytes, found {available}"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header_end)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip when the name ends in .gz); used by tests and tools."""
    codes = {v.newbyteorder("=").str: k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise DataError(f"dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(_IDX_DTYPES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(payload)
