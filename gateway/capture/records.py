"""One captured request and its Arrow columns (the capture files' schema).

`CaptureRecord` holds references only (the request's and the answer's numpy tensors);
the writer thread turns a batch of them into one Arrow table (`table_of`):

| column | type | what |
|---|---|---|
| `request_id` | string | the client's `X-Request-Id` or the gateway's; labels join on it |
| `ts` | float64 | when the answer came, seconds since the epoch |
| `model`, `arm` | string | the model; the framework that answered (`tensorflow`, `pytorch`) |
| `version` | int64 | the version that answered (null: unknown) |
| `key_hash` | string | blake2b-64 of the routing key, as the prediction log has it |
| `latency_ms` | float64 | the router's time for the request, failover included |
| `status` | int32 | 200, or the error's HTTP status |
| `error` | string | the error's kind, null on success |
| `failover` | bool | the other arm answered after the chosen one failed |
| `input.<name>` | list<dtype> | one input tensor, flattened (C order) |
| `input.<name>.shape` | list<int64> | its shape (batch first) |
| `output.<name>`, `output.<name>.shape` | as inputs | the answer's tensors (null on errors) |

pyarrow is imported by the writer and the reader only (capture on, or `dualserve replay`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.experiments.log.records import key_hash

if TYPE_CHECKING:
    import pyarrow as pa

INPUT, OUTPUT, SHAPE = "input.", "output.", ".shape"
SCALARS = (
    "request_id", "ts", "model", "arm", "version", "key_hash", "latency_ms", "status",
    "error", "failover",
)  # fmt: skip


@dataclass(slots=True)
class CaptureRecord:
    """One captured request (see the module's table for the fields' meaning)."""

    request_id: str
    ts: float
    model: str
    arm: str
    version: int | None
    routing_key: str | None
    latency_s: float
    status: int
    error: str | None
    failover: bool
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] | None
    nbytes: int = 0  # the inputs' bytes (the queue's byte bound counts them)


def input_signature(record: CaptureRecord) -> tuple[tuple[str, str], ...]:
    """The inputs' names and dtypes: records of one signature share a file."""
    return tuple(sorted((name, np.asarray(a).dtype.str) for name, a in record.inputs.items()))


def _scalar_fields() -> list[pa.Field]:
    import pyarrow as pa

    return [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("ts", pa.float64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("version", pa.int64()),
        pa.field("key_hash", pa.string()),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("failover", pa.bool_(), nullable=False),
    ]


def _tensor_columns(
    prefix: str, name: str, tensors: list[np.ndarray | None]
) -> list[tuple[str, Any]]:
    """`prefix+name` (flattened values) and its `.shape` column; None = a null cell."""
    import pyarrow as pa

    present = [np.asarray(t) for t in tensors if t is not None]
    dtype = present[0].dtype if present else np.dtype("float32")
    flat = [np.ravel(np.asarray(t, dtype=dtype)) if t is not None else None for t in tensors]
    sizes = np.array([0 if f is None else f.size for f in flat], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]), pa.int64())
    values = np.concatenate([f for f in flat if f is not None]) if present else np.array([], dtype)
    mask = pa.array([t is None for t in tensors], pa.bool_())
    data = pa.LargeListArray.from_arrays(offsets, pa.array(values), mask=mask)
    dims = [list(np.shape(t)) if t is not None else None for t in tensors]
    shape = pa.array(dims, pa.list_(pa.int64()))
    return [(prefix + name, data), (prefix + name + SHAPE, shape)]


def table_of(records: list[CaptureRecord]) -> pa.Table:
    """One Arrow table of records with one input signature (`input_signature`); output
    columns are the union of the answers' outputs (null where an answer lacks one)."""
    import pyarrow as pa

    scalars = {
        "request_id": [r.request_id for r in records],
        "ts": [r.ts for r in records],
        "model": [r.model for r in records],
        "arm": [r.arm for r in records],
        "version": [r.version for r in records],
        "key_hash": [key_hash(r.routing_key) for r in records],
        "latency_ms": [round(r.latency_s * 1000, 4) for r in records],
        "status": [r.status for r in records],
        "error": [r.error for r in records],
        "failover": [r.failover for r in records],
    }
    fields = _scalar_fields()
    arrays = [pa.array(scalars[f.name], f.type) for f in fields]
    names = [f.name for f in fields]
    for name in sorted(records[0].inputs):
        for column, array in _tensor_columns(INPUT, name, [r.inputs[name] for r in records]):
            names.append(column)
            arrays.append(array)
    outputs = sorted({n for r in records if r.outputs is not None for n in r.outputs})
    for name in outputs:
        cells = [None if r.outputs is None else r.outputs.get(name) for r in records]
        for column, array in _tensor_columns(OUTPUT, name, cells):
            names.append(column)
            arrays.append(array)
    return pa.Table.from_arrays(arrays, names=names)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """`table` in `schema` (output columns it lacks added as nulls: an error's record in
    a file of answers), or None when it cannot be (other inputs, types or outputs)."""
    import pyarrow as pa

    if not set(table.column_names) <= set(schema.names):
        return None
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if column.type != field.type:
                return None
            columns.append(column)
        elif field.name.startswith(OUTPUT):
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            return None
    return pa.Table.from_arrays(columns, schema=schema)


def tensors_of(row: dict[str, Any], prefix: str) -> dict[str, np.ndarray]:
    """The tensors of one row read back (`prefix` is `INPUT` or `OUTPUT`): each flattened
    column reshaped by its `.shape` column; a null cell is left out."""
    found: dict[str, np.ndarray] = {}
    for column, value in row.items():
        if not column.startswith(prefix) or column.endswith(SHAPE) or value is None:
            continue
        shape: Any = row[column + SHAPE]
        found[column[len(prefix) :]] = np.asarray(value).reshape([int(d) for d in shape])
    return found
