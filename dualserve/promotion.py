"""`dualserve promote MODEL ARM` and `dualserve events`: the CLI side of promoting an arm
and of the models' events (issue 22; the gateway side is `gateway.experiments.promote`).

Promoting goes through the running gateway's admin API (`POST /admin/models/{m}/promote`,
its admin token from `run/`), which checks the arm and the running experiments and moves
every worker's routing. `dualserve retire` records its `retire` event straight in the
experiments database, as `dualserve experiment report` reads it, so it is recorded
whether or not a gateway runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from dualserve.run_state import read_state


class PromoteError(RuntimeError):
    """The gateway refused, or could not be reached; the message says why."""


def promote(run_dir: Path, model: str, arm: str, reason: str, force: bool) -> dict[str, Any]:
    """Ask the running gateway to promote `arm` of `model`; its answer (event, policy).

    Raises:
        PromoteError: nothing runs, the gateway is unreachable, or it refused (the
            refusal's sentence: 409 while an experiment runs, 400 an unknown arm).
    """
    try:
        gateway = read_state(run_dir).gateway
    except FileNotFoundError:
        raise PromoteError("nothing is running (start it with `dualserve up`)") from None
    token = gateway.admin_token_file.read_text().strip()
    body = {"arm": arm, "reason": reason, "force": force, "set_by": "dualserve promote"}
    try:
        reply = httpx.post(
            f"{gateway.rest}/admin/models/{model}/promote",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        raise PromoteError(f"the gateway at {gateway.rest} did not answer: {exc}") from None
    if reply.status_code != 200:
        raise PromoteError(_error(reply))
    answer: dict[str, Any] = reply.json()
    return answer


def _error(reply: httpx.Response) -> str:
    try:
        return f"{reply.status_code}: {reply.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"{reply.status_code}: {reply.text[:200]}"


def record_retire(database_url: str, model: str, version: int, done: list[str]) -> None:
    """Record a retirement as a `retire` model event (the lines say what was done)."""
    from gateway.control.database import open_database
    from gateway.experiments.promote import ModelEvent, record_model_event

    event = ModelEvent(model, "retire", f"dualserve retire {model} {version}", "dualserve retire",
                       version=version, details={"done": done})  # fmt: skip
    db = open_database(database_url, None)
    try:
        record_model_event(db, event)
    finally:
        db.close()


def events(database_url: str, model: str | None) -> list[dict[str, Any]]:
    """The models' events (or one model's), oldest first; [] for a database without any."""
    from gateway.control.database import open_database
    from gateway.experiments.promote import SCHEMA, read_model_events

    db = open_database(database_url, None)
    try:
        db.create_schema(SCHEMA)
        return [event.as_dict() for event in read_model_events(db, model)]
    finally:
        db.close()
