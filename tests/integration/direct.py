"""Each backend's own answer, asked directly over its REST API: the truth that answers
through the gateway are compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np

from backends.torchserve.launcher import read_token


def direct_outputs(
    stack: dict[str, Any], model: str, x: np.ndarray
) -> dict[str, dict[str, np.ndarray]]:
    """framework -> output name -> array (`class` int64, `probabilities` float32), from TF
    Serving's REST API and TorchServe's predictions API, in TF Serving's row format."""
    token = read_token(Path(stack["pytorch"]["token_file"]), "inference")
    body = {"instances": x.tolist()}
    with httpx.Client(timeout=60) as client:
        replies = {
            "tensorflow": client.post(f"{stack['tensorflow']['rest']}/v1/models/{model}:predict", json=body),
            "pytorch": client.post(f"{stack['pytorch']['inference']}/predictions/{model}", json=body, headers={"Authorization": f"Bearer {token}"}),
        }  # fmt: skip
    out: dict[str, dict[str, np.ndarray]] = {}
    for arm, reply in replies.items():
        rows = reply.json()["predictions"]
        out[arm] = {
            "class": np.array([r["class"] for r in rows], np.int64),
            "probabilities": np.array([r["probabilities"] for r in rows], np.float32),
        }
    return out
