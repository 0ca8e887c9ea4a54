"""Schemathesis against a running gateway's own OpenAPI document: every check, bounded.

Shared by the unit tier (the app with fake upstreams, served by uvicorn on a loopback
port) and the integration tier (the gateway `dualserve up` started). A finding is a
response the document does not describe (status, content type, headers, body schema), a
5xx, an undeclared method answered without 405 and `Allow`, schema-valid data refused or
schema-invalid data accepted. Each finding is reported with the curl line that shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

MAX_EXAMPLES = 25
SEED = 13
# Operations whose schema-valid bodies may still be refused with 400: JSON Schema cannot
# state an ExperimentSpec's cross-field rules (two arms of two frameworks, a split naming
# both, rollout steps rising to 100, a latency margin) nor which models exist (404).
_SPEC_RULES = {
    "include-path": "/admin/experiments",
    "include-method": "POST",
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "5xx"]
        }
    },
}


@dataclass(frozen=True)
class Finding:
    operation: str
    check: str
    title: str
    detail: str
    curl: str

    def __str__(self) -> str:
        return f"{self.operation}: {self.check}: {self.title}\n  {self.detail}\n  {self.curl}"


def run_schemathesis(base_url: str, headers: dict[str, str]) -> tuple[int, list[Finding]]:
    """(checks run, distinct findings) of all checks on every operation of the document
    at `base_url`/openapi.json, `MAX_EXAMPLES` per operation and phase, seed `SEED`."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "checks": {"enabled": True},
            "headers": headers,
            "operations": [_SPEC_RULES],
        }
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    checks, findings = 0, dict[tuple[str, str, str], Finding]()
    for event in from_schema(schema).execute():
        if isinstance(event, events.FatalError | events.NonFatalError):
            raise AssertionError(f"schemathesis could not run: {event}")
        if isinstance(event, events.ScenarioFinished):
            for finding in _findings(event):
                findings.setdefault((finding.operation, finding.check, finding.title), finding)
            checks += sum(len(nodes) for nodes in event.recorder.checks.values())
    return checks, list(findings.values())


def _findings(event: events.ScenarioFinished) -> Iterator[Finding]:
    for nodes in event.recorder.checks.values():
        for node in nodes:
            if node.status != Status.FAILURE or node.failure_info is None:
                continue
            failure = node.failure_info.failure
            yield Finding(
                operation=event.recorder.label,
                check=node.name,
                title=failure.title,
                detail=" | ".join(str(failure.message).splitlines())[:300],
                curl=node.failure_info.code_sample,
            )
