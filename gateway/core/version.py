"""A model version as the protocols carry it in text: one parser for every ingress."""

from __future__ import annotations

from gateway.core.errors import BadRequest


def parse_version(text: str | None) -> int | None:
    """The version `text` names: a positive integer; None when it names none (None, or
    '' as an OIP message's unset `model_version` / `version` field).

    Raises:
        BadRequest: "version must be a positive integer, got '<text>'" (TF Serving's REST
            paths, OIP's `/versions/{v}` and `model_version` alike).
    """
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"version must be a positive integer, got '{text}'")
    return int(text)
