"""Reading a capture back: the complete files of a folder (or one file) as one frame.

Any Parquet reader works (the schema is in `gateway.capture.records`): pandas
`pd.read_parquet(file)`, DuckDB `SELECT * FROM read_parquet('run/gateway/capture/*/*.parquet')`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def capture_files(path: Path) -> list[Path]:
    """The complete capture files at `path`: the file itself, or every `*.parquet` under
    the folder (a capture root, or one model's folder), in name order (names begin with
    the UTC time the file was opened). Open `.part` files are left out.

    Raises:
        FileNotFoundError: `path` does not exist, or holds no complete file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"capture {path} does not exist")
    files = sorted(path.rglob("*.parquet"), key=lambda p: (p.name, str(p)))
    if not files:
        raise FileNotFoundError(f"capture {path} holds no complete .parquet file")
    return files


def read_capture(path: Path, model: str | None = None) -> pd.DataFrame:
    """Every captured request at `path` (one row each, in time order), only `model`'s
    when given. Columns as `gateway.capture.records` documents them."""
    import pandas as pd

    frames = [pd.read_parquet(file) for file in capture_files(path)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if model is not None:
        frame = frame[frame["model"] == model]
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def labels_from_file(path: Path) -> dict[str, int]:
    """Labels fed back outside the gateway: a CSV or Parquet file with the columns
    `request_id` and `label` (an integer class).

    Raises:
        ValueError: a column is missing, naming it.
    """
    import pandas as pd

    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for column in ("request_id", "label"):
        if column not in frame.columns:
            raise ValueError(f"labels file {path}: no column {column!r} (request_id, label)")
    return {str(r): int(v) for r, v in zip(frame["request_id"], frame["label"], strict=True)}


def labels_from_log(database_url: str, request_ids: list[str]) -> dict[str, int]:
    """The labels fed back to the gateway (`POST .../feedback`, the prediction log's
    `feedback` table) for these request ids."""
    from gateway.experiments.log.store import SqlLogStore, open_store

    store = open_store(database_url, None)
    try:
        return store.labels(request_ids) if isinstance(store, SqlLogStore) else {}
    finally:
        store.close()
