"""The experiments' own McNemar and Wilson figures against statsmodels, their test oracle.

The gateway computes both with scipy and a few lines of its own (statsmodels and pandas stay
out of its image); statsmodels, in the `dev` extra only, is the independent truth here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from gateway.experiments.stats.figures import wilson_interval
from gateway.experiments.stats.paired import mcnemar_exact_p


@pytest.mark.parametrize(
    ("control_only", "candidate_only"),
    [
        (0, 1),
        (1, 0),
        (1, 1),
        (3, 3),
        (0, 7),
        (2, 9),
        (9, 2),
        (10, 11),
        (40, 25),
        (0, 60),
        (150, 180),
    ],
)
def test_mcnemar_exact_p_is_statsmodels(control_only: int, candidate_only: int) -> None:
    table = np.array([[17, control_only], [candidate_only, 5]])  # concordant cells do not count
    want = float(mcnemar(table, exact=True).pvalue)
    assert mcnemar_exact_p(control_only, candidate_only) == pytest.approx(
        want, rel=1e-12, abs=1e-300
    )


def test_mcnemar_exact_p_by_hand() -> None:
    # b=0, c=5: both one-sided tails of Binomial(5, 1/2) at 0 and 5 = 2 / 32
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(4, 4) == 1.0


def test_mcnemar_exact_p_needs_a_discordant_pair() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact_p(0, 0)


@pytest.mark.parametrize(
    ("successes", "trials"),
    [
        (0, 1),
        (1, 1),
        (0, 50),
        (50, 50),
        (1, 3),
        (7, 10),
        (12.5, 40.25),
        (333, 1000),
        (0.3, 0.9),
        (999_999, 1_000_000),
    ],
)
def test_wilson_interval_is_statsmodels(successes: float, trials: float) -> None:
    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    assert wilson_interval(successes, trials) == pytest.approx((low, high), rel=1e-12, abs=1e-15)


def test_wilson_interval_by_hand() -> None:
    # 5 of 10, z = 1.96: center 0.5, half = 1.96*sqrt(0.025 + 0.0960)/1.3842 (Wilson 1927)
    low, high = wilson_interval(5, 10, z=1.96)
    half = 1.96 * (0.25 / 10 + 1.96**2 / 400) ** 0.5 / (1 + 1.96**2 / 10)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson_interval(0, 5)[0] >= 0.0 and wilson_interval(5, 5)[1] <= 1.0


def test_importing_the_gateway_app_loads_neither_statsmodels_nor_pandas() -> None:
    probe = (
        "import json, sys; import gateway.app; "
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "gateway" in loaded  # the probe did import the app
    assert loaded.isdisjoint({"statsmodels", "pandas", "patsy", "formulaic", "aiohttp"})
