"""What the sweep can aim at, and how each target is reached.

A `Target` is one (name, protocol) pair of a model: the Locust user class that drives
it, the host and path, the headers (TorchServe's key, the gateway's `X-Backend` pin),
and the routing policy the gateway must hold while it runs. Names:

| name | what answers |
|---|---|
| `tf-direct`, `torch-direct` | the backend itself |
| `pt2-direct` | the bundled OIP server with the `.pt2` export (gRPC only; asked by name) |
| `gateway->tf`, `gateway->torch` | the gateway, pinned with `X-Backend` |
| `gateway->torch-pt2` | the gateway, `X-Arm: torch-pt2`: pytorch on the OIP server (if it runs) |
| `gateway-50/50` | the gateway, weighted 50/50 by sticky `X-Routing-Key` |
| `gateway-shadow` | the gateway, TF answers, every request mirrored to PyTorch |
| `nginx->tf`, `nginx->torch`, `nginx-50/50` | the nginx baseline (`loadtest.nginx`) |

Over gRPC the same names exist except the nginx ones; their users come from
`loadtest.users.grpc_users` when it exists (see `grpc_targets`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.torchserve.launcher import read_token
from dualserve.run_state import RunState

SPLIT_POLICY = {"mode": "weighted", "weights": {"tensorflow": 50, "pytorch": 50}, "sticky": True}
SHADOW_POLICY = {"mode": "shadow", "primary": "tensorflow", "shadow_sample_rate": 1.0}
ALL_TARGETS = (
    "tf-direct",
    "torch-direct",
    "gateway->tf",
    "gateway->torch",
    "gateway-50/50",
    "gateway-shadow",
    "nginx->tf",
    "nginx->torch",
    "nginx-50/50",
)
PT2_DIRECT = "pt2-direct"
"""Not in `ALL_TARGETS` (the demo's sweep stays as it was): `--targets ...,pt2-direct`."""
PT2_GATEWAY, PT2_ARM = "gateway->torch-pt2", "torch-pt2"
"""Not in `ALL_TARGETS` either: the gateway's pytorch arm on the OIP server, by its name."""
PT2_ARMS_POLICY = {
    "mode": "pinned",
    "primary": PT2_ARM,
    "arms": {
        "tensorflow": {"framework": "tensorflow"},
        "torch-ts": {"framework": "pytorch", "server": "torchserve"},
        PT2_ARM: {"framework": "pytorch", "server": "oip"},
    },
    "weights": {"tensorflow": 0, "torch-ts": 0, PT2_ARM: 100},
}
"""The policy held while `gateway->torch-pt2` runs: arms that name their server, so
`X-Arm: torch-pt2` reaches the OIP server whichever server pytorch's own arm calls."""


@dataclass(frozen=True)
class Target:
    """One thing to load, over one protocol."""

    name: str
    protocol: str
    framework: str  # tensorflow, pytorch or mixed
    route: str  # direct, gateway or nginx
    host: str
    user_class: str = "HttpTargetUser"
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    sticky: bool = False
    policy: dict[str, Any] = field(default_factory=lambda: dict(SPLIT_POLICY))
    env: dict[str, str] = field(default_factory=dict)


def rest_targets(state: RunState, model: str, nginx_url: str | None) -> list[Target]:
    """Every REST target of `model` (nginx ones only when `nginx_url` is given)."""
    token = read_token(state.pytorch.token_file, "inference")
    gw, predict = state.gateway.rest, f"/v1/models/{model}:predict"
    out = [
        Target("tf-direct", "rest", "tensorflow", "direct", state.tensorflow.rest, path=predict),
        Target(
            "torch-direct",
            "rest",
            "pytorch",
            "direct",
            state.pytorch.inference,
            path=f"/predictions/{model}",
            headers={"Authorization": f"Bearer {token}"},
        ),
        Target(
            "gateway->tf",
            "rest",
            "tensorflow",
            "gateway",
            gw,
            path=predict,
            headers={"X-Backend": "tensorflow"},
        ),
        Target(
            "gateway->torch",
            "rest",
            "pytorch",
            "gateway",
            gw,
            path=predict,
            headers={"X-Backend": "pytorch"},
        ),
        Target("gateway-50/50", "rest", "mixed", "gateway", gw, path=predict, sticky=True),
        Target(
            "gateway-shadow",
            "rest",
            "mixed",
            "gateway",
            gw,
            path=predict,
            policy=dict(SHADOW_POLICY),
        ),
    ]
    if state.oip is not None:
        out.append(
            Target(PT2_GATEWAY, "rest", "pytorch", "gateway", gw, path=predict,
                   headers={"X-Arm": PT2_ARM}, policy=dict(PT2_ARMS_POLICY))
        )  # fmt: skip
    if nginx_url:
        out += [
            Target("nginx->tf", "rest", "tensorflow", "nginx", nginx_url, path=f"/tf{predict}"),
            Target("nginx->torch", "rest", "pytorch", "nginx", nginx_url, path=f"/torch{predict}"),
            Target("nginx-50/50", "rest", "mixed", "nginx", nginx_url, path=predict),
        ]
    return out


def grpc_targets(state: RunState, model: str) -> list[Target]:
    """gRPC targets (TF Serving's `Predict` API, and TorchServe's own), when
    `loadtest.users.grpc_users` exists and the gateway has a gRPC port.

    The module is only located here, never imported: it brings in Locust, which
    monkey-patches the runner's process with gevent. Its users read the model from
    `DUALSERVE_MODEL`, the gateway pin from `DUALSERVE_PIN` (a framework, `x-backend`) or
    `DUALSERVE_PIN_ARM` (an arm's name, `x-arm`), the address from `--host`.
    """
    gw, env = state.gateway.grpc, {"DUALSERVE_MODEL": model}
    if importlib.util.find_spec("loadtest.users.grpc_users") is None or not gw:
        return []
    token = {**env, "DUALSERVE_TORCHSERVE_TOKEN_FILE": str(state.pytorch.token_file)}
    via = "GatewayTFServingUser"
    found = [
        Target(
            "tf-direct",
            "grpc",
            "tensorflow",
            "direct",
            state.tensorflow.grpc,
            "TFServingDirectUser",
            env=env,
        ),
        Target(
            "torch-direct",
            "grpc",
            "pytorch",
            "direct",
            state.pytorch.grpc,
            "TorchServeDirectUser",
            env=token,
        ),
        Target(
            "gateway->tf",
            "grpc",
            "tensorflow",
            "gateway",
            gw,
            via,
            env={**env, "DUALSERVE_PIN": "tensorflow"},
        ),
        Target(
            "gateway->torch",
            "grpc",
            "pytorch",
            "gateway",
            gw,
            via,
            env={**env, "DUALSERVE_PIN": "pytorch"},
        ),
        Target(
            "gateway-50/50",
            "grpc",
            "mixed",
            "gateway",
            gw,
            via,
            sticky=True,
            env={**env, "DUALSERVE_STICKY": "1"},
        ),
        Target(
            "gateway-shadow",
            "grpc",
            "mixed",
            "gateway",
            gw,
            via,
            env=env,
            policy=dict(SHADOW_POLICY),
        ),
    ]
    if state.oip is not None:  # the .pt2 export on the bundled OIP server
        oip = state.oip.grpc
        found.append(Target(PT2_DIRECT, "grpc", "pytorch", "direct", oip, "OipDirectUser", env=env))
        found.append(
            Target(PT2_GATEWAY, "grpc", "pytorch", "gateway", gw, via,
                   env={**env, "DUALSERVE_PIN_ARM": PT2_ARM}, policy=dict(PT2_ARMS_POLICY))
        )  # fmt: skip
    return found


def capture_bodies(capture: Path, model: str) -> list[str]:
    """The captured requests of `model` (`dualserve up --capture`; a capture folder or
    file) as TF Serving columnar JSON bodies, in the order they came: a load test of
    real traffic (issue 28). Their answers are not checked.

    Raises:
        FileNotFoundError: no complete capture file at `capture`.
        ValueError: the capture holds no request of `model`.
    """
    from gateway.capture.reader import read_capture
    from gateway.capture.replay import request_body

    frame = read_capture(capture, model)
    if frame.empty:
        raise ValueError(f"the capture {capture} holds no request of {model}")
    return [json.dumps(request_body(row)) for row in frame.to_dict("records")]


def payload_bodies(model: str, count: int = 256) -> list[str]:
    """Single-example TF Serving JSON bodies from the model's test set, not constants."""
    from trainers.architecture import to_model_input
    from trainers.data import load_dataset

    arch = model.rsplit("-", 1)[-1]
    x = to_model_input(load_dataset("digits").test.x[:count], arch)
    return [json.dumps({"instances": x[i : i + 1].tolist()}) for i in range(len(x))]
