"""Feedback labels: which classes a model has, and the 400 for a label outside them.

A label is the index of the true class, so it lies in `0..classes-1`, where `classes` is
the last dimension of the model's `probabilities` output in the manifest (the house's
contract: both frameworks' exports return `probabilities` float32 `[batch, classes]`).
A label outside it would be recorded and silently counted as a wrong answer (issue 24).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.catalog import Catalog

PROBABILITIES = "probabilities"


class LabelOutOfRange(ValueError):
    """A label outside its model's classes; the message names the range."""


def class_counts(catalog: Catalog) -> dict[str, int]:
    """Classes per model, from the last dimension of its `probabilities` output (models
    without one, or with an unknown dimension, are left out: their labels are unchecked)."""
    counts: dict[str, int] = {}
    for name in catalog.names:
        for tensor in catalog.get(name).outputs:
            if tensor.name == PROBABILITIES and tensor.shape and tensor.shape[-1] > 0:
                counts[name] = int(tensor.shape[-1])
    return counts


def check_label_range(items: Sequence[tuple[str, int]], classes: int) -> None:
    """Before any model is known: no label may reach `classes` (the most any model has).

    Raises:
        LabelOutOfRange: naming the item, the label and the range.
    """
    if classes <= 0:
        return
    for index, (request_id, label) in enumerate(items):
        if label >= classes:
            raise LabelOutOfRange(
                f"feedback[{index}].label: {label} (request {request_id}) is outside every"
                f" model's classes, 0..{classes - 1}"
            )


def check_model_labels(
    items: Sequence[tuple[str, int]], models: Mapping[str, str], classes: Mapping[str, int]
) -> None:
    """Once the logged rows name each request's model (`models`: request id -> model).

    Raises:
        LabelOutOfRange: naming the request, the label, the model and its range.
    """
    for index, (request_id, label) in enumerate(items):
        model = models.get(request_id)
        count = None if model is None else classes.get(model)
        if count is not None and label >= count:
            raise LabelOutOfRange(
                f"feedback[{index}].label: {label} (request {request_id}) is outside the"
                f" classes of model {model}, 0..{count - 1}"
            )
