"""Locust users for the sweep; configured by the JSON file named in `DUALSERVE_LOADTEST_CELL`.

The sweep runner (`python -m loadtest`) writes that file per cell and runs

    locust -f loadtest/users/locustfile.py --headless --csv ... HttpTargetUser

Keys: `path` (request path on `--host`), `headers`, `sticky` (send an `X-Routing-Key`
that differs per simulated user), `payloads` (a JSON file of request bodies drawn from
the model's test set), `out_dir`, the timing keys read by `loadtest.users.recorder`, and
`arrival`/`rate`/`workers` (closed loop, or an open-loop schedule: `loadtest.users.openloop`).
gRPC users come from `loadtest.users.grpc_users` when that module exists.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from functools import cache
from pathlib import Path
from typing import Any

from locust import FastHttpUser, events, task
from locust.env import Environment

from loadtest.users import openloop, recorder

_user_ids = itertools.count()


@cache
def cell_config() -> dict[str, Any]:
    return dict(json.loads(Path(os.environ["DUALSERVE_LOADTEST_CELL"]).read_text()))


@cache
def payloads() -> list[str]:
    return [str(body) for body in json.loads(Path(cell_config()["payloads"]).read_text())]


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if "DUALSERVE_LOADTEST_CELL" in os.environ:
        recorder.install(environment, cell_config())


_CELL = os.environ.get("DUALSERVE_LOADTEST_CELL")
if _CELL and json.loads(Path(_CELL).read_text()).get("user_class") != "HttpTargetUser":
    # the gRPC users (their own module, imported only when a cell needs them)
    from loadtest.users.grpc_users import (  # noqa: F401
        GatewayOipUser,
        GatewayTFServingUser,
        OipDirectUser,
        TFServingDirectUser,
        TorchServeDirectUser,
    )


class HttpTargetUser(FastHttpUser):
    """One connection, one request at a time: closed loop, the next as soon as the answer
    came; open loop, the next at the schedule's next free time (`loadtest.users.openloop`)."""

    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        config = cell_config()
        self.path: str = config["path"]
        self.headers = {"Content-Type": "application/json", **config["headers"]}
        if config.get("sticky"):
            self.headers["X-Routing-Key"] = f"user-{os.getpid()}-{next(_user_ids)}"
        self.position = random.randrange(len(payloads()))

    @task
    def predict(self) -> None:
        scheduled = openloop.wait_for_turn()
        bodies = payloads()
        self.position = (self.position + 1) % len(bodies)
        with self.client.post(
            self.path,
            data=bodies[self.position],
            headers=self.headers,
            catch_response=True,
            context={} if scheduled is None else {"scheduled_at": scheduled},
        ) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {(reply.text or '')[:200]}")
            else:  # the gateway's own share of the reply, when it went through the gateway
                recorder.server_timing(reply.headers.get("Server-Timing"))
