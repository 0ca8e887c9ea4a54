"""Signatures as plain data, and the checks TF Serving applies before running one.

Kept free of TensorFlow (numpy only) so the rules are unit-tested without loading a
model: the servable turns a SavedModel's `SignatureDef`s into these dataclasses once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from backends.tfserving.server.errors import FailedPrecondition, InvalidArgument

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorInfo:
    """One signature input or output: numpy dtype, TF dtype name, shape (-1 = any)."""

    name: str
    dtype: np.dtype
    tf_dtype: str
    shape: tuple[int, ...] | None  # None: unknown rank

    def describe_shape(self) -> str:
        return "unknown rank" if self.shape is None else str(list(self.shape))


@dataclass(frozen=True)
class SignatureInfo:
    """A signature's inputs and outputs by alias (the keys clients use)."""

    name: str
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]
    method_name: str = "tensorflow/serving/predict"


@dataclass(frozen=True)
class ModelSpec:
    """What a request asks for: model, optional version or label, signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""


def select_signature(signatures: Mapping[str, SignatureInfo], name: str) -> SignatureInfo:
    """The named signature ('' means serving_default), or TF Serving's error."""
    key = name or DEFAULT_SIGNATURE
    if key not in signatures:
        raise FailedPrecondition(f'Serving signature key "{key}" not found.')
    return signatures[key]


def _join(names: Sequence[str] | set[str]) -> str:
    return ",".join(sorted(names))


def check_input_names(sig: SignatureInfo, sent: Mapping[str, object]) -> None:
    """Every signature input present, nothing extra (TF Serving's message)."""
    wanted, got = set(sig.inputs), set(sent)
    if wanted == got:
        return
    raise InvalidArgument(
        f"input size does not match signature: {len(got)}!={len(wanted)} "
        f"len({{{_join(got)}}}) != len({{{_join(wanted)}}}). "
        f"Sent extra: {{{_join(got - wanted)}}}. Missing but required: {{{_join(wanted - got)}}}."
    )


def check_tensor(info: TensorInfo, value: np.ndarray) -> None:
    """dtype and shape of one input against its signature entry; the message names both."""
    if value.dtype != info.dtype and not _both_strings(value.dtype, info.dtype):
        raise InvalidArgument(
            f"input '{info.name}': expected dtype {info.tf_dtype} ({info.dtype}) "
            f"but received {value.dtype}"
        )
    if info.shape is None:
        return
    received = value.shape
    fits = len(received) == len(info.shape) and all(
        want in (-1, got) for want, got in zip(info.shape, received, strict=True)
    )
    if not fits:
        raise InvalidArgument(
            f"input '{info.name}': expected shape {info.describe_shape()} "
            f"but received {list(received)}"
        )


def _both_strings(a: np.dtype, b: np.dtype) -> bool:
    return a.kind in "OSU" and b.kind in "OSU"


def batch_size(inputs: Mapping[str, np.ndarray]) -> int:
    """The common 0th dimension of all inputs; batching needs it to agree."""
    sizes = {name: (value.shape[0] if value.ndim else 1) for name, value in inputs.items()}
    distinct = set(sizes.values())
    if len(distinct) > 1:
        raise InvalidArgument(
            "Batching Run() input tensors must have equal 0th-dimension size; "
            f"got {dict(sorted(sizes.items()))}"
        )
    return distinct.pop() if distinct else 0


def check_output_filter(sig: SignatureInfo, output_filter: Sequence[str]) -> tuple[str, ...]:
    """The outputs to return: all of them, or the filter after TF Serving's checks."""
    if not output_filter:
        return tuple(sig.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in sig.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{_join(set(sig.outputs))}}}."
            )
        if alias in seen:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return tuple(output_filter)


def validate_inputs(sig: SignatureInfo, inputs: Mapping[str, np.ndarray]) -> int:
    """All checks on a request's inputs; returns its batch size."""
    check_input_names(sig, inputs)
    for name, value in inputs.items():
        check_tensor(sig.inputs[name], value)
    return batch_size(inputs)
