"""The capture's sampler: a share, sticky by routing key (whole keys kept or not)."""

from __future__ import annotations

from scipy.stats import binom

from gateway.capture.sampler import keep, unit_draw


def test_every_request_of_a_key_has_the_same_fate() -> None:
    for key in (f"user-{i}" for i in range(500)):
        fates = {keep(0.2, "digits-mlp", key, f"request-{n}") for n in range(20)}
        assert len(fates) == 1, key


def test_the_kept_share_of_keys_is_within_binomial_bounds() -> None:
    keys, share = 5000, 0.2
    kept = sum(keep(share, "digits-mlp", f"user-{i}", "x") for i in range(keys))
    low, high = binom.ppf(0.0005, keys, share), binom.ppf(0.9995, keys, share)
    assert low <= kept <= high, (kept, low, high)


def test_without_a_key_each_request_is_drawn_by_its_id() -> None:
    ids = [f"{i:032x}" for i in range(5000)]
    kept = sum(keep(0.5, "digits-mlp", None, i) for i in ids)
    assert binom.ppf(0.0005, 5000, 0.5) <= kept <= binom.ppf(0.9995, 5000, 0.5)


def test_shares_zero_and_one_and_models_are_drawn_apart() -> None:
    assert not keep(0.0, "m", "k", "r") and keep(1.0, "m", "k", "r")
    draws_a = [unit_draw("a", f"k{i}") for i in range(200)]
    draws_b = [unit_draw("b", f"k{i}") for i in range(200)]
    assert draws_a != draws_b
    assert all(0.0 <= d < 1.0 for d in draws_a)
