"""Keys held as digests, compared in constant time, rate-limited per key (issue 14)."""

from __future__ import annotations

import hashlib
import hmac
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from gateway.core.errors import RateLimited, Unauthorized
from gateway.edge.auth import Authenticator
from gateway.edge.ratelimit import RateLimiter
from gateway.edge.security_settings import AuthSettings, RateLimitSettings
from tests.unit.gateway.test_gateway_app import ROW, _gateway
from tests.unit.protocols.test_grpc_ingress import predict_request, running


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_settings_keep_digests_only() -> None:
    auth = AuthSettings(api_keys=["k1", _sha("k2")], admin_token="root")  # type: ignore[list-item]
    assert [k.digest for k in auth.api_keys] == [_sha("k1"), _sha("k2")]
    assert auth.admin_token == _sha("root")
    assert "k1" not in auth.model_dump_json() and "root" not in auth.model_dump_json()


def test_a_digest_only_config_accepts_the_key_and_nothing_else() -> None:
    auth = Authenticator(AuthSettings(api_keys=[_sha("k1")], admin_token=_sha("adm")))  # type: ignore[list-item]
    auth.check_predict({"authorization": "Bearer k1"})
    auth.check_predict({"x-api-key": "k1"})
    auth.check_admin({"authorization": "Bearer adm"})
    for headers in ({}, {"x-api-key": ""}, {"x-api-key": _sha("k1")}, {"authorization": "k1"}):
        with pytest.raises(Unauthorized):
            auth.check_predict(headers)  # the digest itself is no credential
    with pytest.raises(Unauthorized):
        auth.check_admin({"authorization": f"Bearer {_sha('adm')}"})


def test_every_digest_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr("gateway.edge.auth.hmac.compare_digest", spy)
    keys = [f"key-{i}" for i in range(5)]
    auth = Authenticator(AuthSettings(api_keys=keys, admin_token="a"))  # type: ignore[arg-type]
    auth.check_predict({"x-api-key": "key-0"})  # the first matches; the rest are still compared
    assert len(compared) == 5


def test_the_keys_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    config, keys_file, clock = tmp_path / "gateway.yaml", tmp_path / "keys.yaml", Clock()
    keys_file.write_text(yaml.safe_dump({"admin_token": _sha("adm"), "api_keys": []}))
    auth = Authenticator(AuthSettings(admin_token_file=tmp_path / "tok"), config, clock)
    assert auth.keys_file == keys_file and not (tmp_path / "tok").exists()  # file's admin wins
    auth.check_admin({"authorization": "Bearer adm"})
    auth.check_predict({})  # no key anywhere: predictions are open
    keys_file.write_text(
        yaml.safe_dump({"admin_token": _sha("adm"), "api_keys": [{"digest": _sha("new")}]})
    )
    clock.now += 1.0
    with pytest.raises(Unauthorized):
        auth.check_predict({})
    auth.check_predict({"x-api-key": "new"})


def test_token_bucket_by_hand() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limit = RateLimitSettings(requests_per_s=2, burst=2)
    limiter.check("k", limit, "k")
    limiter.check("k", limit, "k")  # the burst: two at once
    with pytest.raises(RateLimited) as refused:
        limiter.check("k", limit, "k")
    assert refused.value.retry_after_s == pytest.approx(0.5)  # one token per 1/2 s
    assert refused.value.headers == {"Retry-After": "1"}
    limiter.check("other", limit, "other")  # buckets are per key
    clock.now += 0.5
    limiter.check("k", limit, "k")
    with pytest.raises(RateLimited):
        limiter.check("k", limit, "k")


def test_per_key_limit_overrides_the_default() -> None:
    clock = Clock()
    keys: list[Any] = [
        {"digest": "slow", "rate_limit": {"requests_per_s": 0.1, "burst": 1}},
        "fast",
    ]
    settings = AuthSettings(api_keys=keys, admin_token="a", rate_limit={"requests_per_s": 100})  # type: ignore[arg-type]
    auth = Authenticator(settings, clock=clock)
    auth.check_predict({"x-api-key": "slow"})
    with pytest.raises(RateLimited, match=r"0.1 requests/s .*exceeded") as refused:
        auth.check_predict({"x-api-key": "slow"})
    assert refused.value.retry_after_s == pytest.approx(10.0)
    for _ in range(100):
        auth.check_predict({"x-api-key": "fast"})


LIMITED = {
    "admin_token": "a",
    "api_keys": [{"digest": "k1", "rate_limit": {"requests_per_s": 0.01}}],
}


def test_rest_answers_429_with_retry_after(tmp_path: Path) -> None:
    for gw in _gateway(tmp_path, auth=LIMITED):
        headers = {"X-API-Key": "k1"}
        assert (
            gw.client.post("/v1/models/toy:predict", json=ROW, headers=headers).status_code == 200
        )
        refused = gw.client.post("/v1/models/toy:predict", json=ROW, headers=headers)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "100"  # a token per 100 s
        assert "rate limit" in refused.json()["error"]
        assert gw.calls == 1


def test_grpc_answers_resource_exhausted(tmp_path: Path) -> None:
    with running(tmp_path, auth=LIMITED) as gw:
        metadata = (("x-api-key", "k1"),)
        gw.predict(predict_request(), metadata=metadata)
        with pytest.raises(grpc.RpcError) as refused:
            gw.predict(predict_request(), metadata=metadata)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit" in (refused.value.details() or "")
        pushback = dict(refused.value.trailing_metadata() or ())["grpc-retry-pushback-ms"]
        assert 90_000 < int(pushback) <= 100_000  # a token per 100 s, on the real clock


def test_processes_starting_together_agree_on_one_admin_token(tmp_path: Path) -> None:
    path = tmp_path / "admin_token"
    code = (
        "import sys; from pathlib import Path; from gateway.edge.auth import resolve_admin_token;"
        "from gateway.settings import AuthSettings;"
        "print(resolve_admin_token(AuthSettings(admin_token_file=Path(sys.argv[1])))[0])"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    tokens = {worker.communicate(timeout=60)[0].strip() for worker in workers}
    assert tokens == {path.read_text().strip()}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["admin_token"]  # no drafts left
