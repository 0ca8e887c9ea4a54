"""The sweep's targets: the `.pt2` OIP server is a gRPC target where the stack runs one."""

from __future__ import annotations

import json
from pathlib import Path

from dualserve.run_state import OipState, RunState
from gateway.settings import ModelPolicy
from loadtest.targets import (
    ALL_TARGETS,
    PT2_DIRECT,
    PT2_GATEWAY,
    grpc_targets,
    rest_targets,
)
from tests.unit.dualserve.test_run_state import STATE


def test_pt2_direct_aims_at_the_oip_server_only_when_it_runs(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "k"}, "management": {"key": "m"}}))
    base = STATE.model_copy(
        update={"pytorch": STATE.pytorch.model_copy(update={"token_file": key_file})}
    )
    assert PT2_DIRECT not in {t.name for t in grpc_targets(base, "digits-mlp")}
    with_oip = RunState.model_validate(
        {**base.model_dump(), "oip": OipState(rest="http://127.0.0.1:8", grpc="127.0.0.1:9")}
    )
    [pt2] = [t for t in grpc_targets(with_oip, "digits-mlp") if t.name == PT2_DIRECT]
    assert (pt2.host, pt2.user_class, pt2.framework, pt2.route) == (
        "127.0.0.1:9", "OipDirectUser", "pytorch", "direct",
    )  # fmt: skip
    assert pt2.env == {"DUALSERVE_MODEL": "digits-mlp"}
    assert PT2_DIRECT not in ALL_TARGETS  # asked by name: the default sweep is unchanged


def test_gateway_to_torch_pt2_pins_the_oip_arm_by_name_over_both_protocols(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "k"}, "management": {"key": "m"}}))
    base = STATE.model_copy(
        update={"pytorch": STATE.pytorch.model_copy(update={"token_file": key_file})}
    )
    assert PT2_GATEWAY not in {t.name for t in rest_targets(base, "digits-mlp", None)}
    assert PT2_GATEWAY not in {t.name for t in grpc_targets(base, "digits-mlp")}
    with_oip = RunState.model_validate(
        {**base.model_dump(), "oip": OipState(rest="http://127.0.0.1:8", grpc="127.0.0.1:9")}
    )
    [rest] = [t for t in rest_targets(with_oip, "digits-mlp", None) if t.name == PT2_GATEWAY]
    [grpc] = [t for t in grpc_targets(with_oip, "digits-mlp") if t.name == PT2_GATEWAY]
    assert (rest.host, rest.headers, rest.route) == (
        with_oip.gateway.rest, {"X-Arm": "torch-pt2"}, "gateway",
    )  # fmt: skip
    assert (grpc.host, grpc.user_class) == (with_oip.gateway.grpc, "GatewayTFServingUser")
    assert grpc.env == {"DUALSERVE_MODEL": "digits-mlp", "DUALSERVE_PIN_ARM": "torch-pt2"}
    for target in (rest, grpc):  # the policy it holds is one the gateway accepts
        policy = ModelPolicy.model_validate(target.policy)
        assert policy.arms["torch-pt2"].server == "oip" and policy.primary == "torch-pt2"
    assert PT2_GATEWAY not in ALL_TARGETS  # asked by name: the default sweep is unchanged
