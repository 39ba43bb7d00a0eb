"""The canary-client ε estimate: the ε of two Gaussians, the estimator on a known Gaussian mechanism,
and the audit section's control and alarm logic (sandbox/audit/canary_clients.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution as pld
from scipy.stats import norm

from sandbox.audit.canary_clients import (
    CONTROL_MIN_EPSILON,
    canary_client_estimate,
    control_threshold,
    control_verdict,
    epsilon_two_gaussians,
    final_model_epsilon,
    null_check,
    run_canary_client_audit,
    server_round_weights,
    verdict,
)
from sandbox.config import resolve
from sandbox.privacy.section import privacy_section
from sandbox.record import Outcome
from sandbox.record.schema import Audit
from tests.conftest import TINY, compose_config


def gaussian_mechanism_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    """dp_accounting's ε of the Gaussian mechanism (an independent implementation)."""
    return pld.from_gaussian_mechanism(
        standard_deviation=sigma, sensitivity=sensitivity, value_discretization_interval=1e-4
    ).get_epsilon_for_delta(delta)


# -- the ε of two Gaussians -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sigma, sensitivity, delta",
    [(1.0, 1.0, 1e-5), (0.5, 1.0, 1e-6), (3.0, 1.0, 1e-5), (1.0, 0.1, 1e-3), (0.5, 2.0, 1e-5), (0.004, 0.01, 1e-5)],
)
def test_equal_spreads_give_the_gaussian_mechanisms_epsilon(sigma, sensitivity, delta):
    expected = gaussian_mechanism_epsilon(sigma, sensitivity, delta)
    got = epsilon_two_gaussians(0.3, sigma, 0.3 + sensitivity, sigma, delta)
    assert got == pytest.approx(expected, rel=1e-3)
    assert epsilon_two_gaussians(0.3 + sensitivity, sigma, 0.3, sigma, delta) == pytest.approx(got, rel=1e-9)


def _brute_force_epsilon(mu0, s0, mu1, s1, delta):
    """ε by bisection on δ(ε) = max over both orders of ∫ max(0, p − e^ε q) dy, integrated on a fine grid."""
    lo_y = min(mu0 - 40 * s0, mu1 - 40 * s1)
    hi_y = max(mu0 + 40 * s0, mu1 + 40 * s1)
    y = np.linspace(lo_y, hi_y, 2_000_001)
    dy = y[1] - y[0]
    p0, p1 = norm.pdf(y, mu0, s0), norm.pdf(y, mu1, s1)

    def delta_of(eps):
        return max(
            np.sum(np.maximum(0.0, p1 - np.exp(eps) * p0)) * dy, np.sum(np.maximum(0.0, p0 - np.exp(eps) * p1)) * dy
        )

    lo, hi = 0.0, 200.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize(
    "mu0, s0, mu1, s1, delta",
    [
        (0.0, 1.0, 1.0, 1.3, 1e-5),
        (0.0, 1.0, 2.0, 0.7, 1e-4),
        (0.0, 1.0, 0.0, 2.0, 1e-5),
        (0.0, 0.01, 0.02, 0.015, 1e-3),
    ],
)
def test_unequal_spreads_match_numerical_integration(mu0, s0, mu1, s1, delta):
    assert epsilon_two_gaussians(mu0, s0, mu1, s1, delta) == pytest.approx(
        _brute_force_epsilon(mu0, s0, mu1, s1, delta), rel=1e-3
    )


def test_identical_gaussians_are_zero_and_bad_inputs_are_refused():
    assert epsilon_two_gaussians(0.0, 1.0, 0.0, 1.0, 1e-5) == 0.0
    with pytest.raises(ValueError, match="standard deviations"):
        epsilon_two_gaussians(0.0, 0.0, 1.0, 1.0, 1e-5)
    with pytest.raises(ValueError, match="delta"):
        epsilon_two_gaussians(0.0, 1.0, 1.0, 1.0, 0.0)


# -- the exact ε of the final-model statistic (final_model_epsilon) ---------------------------------
@pytest.mark.parametrize("z, rounds", [(2.0, 16), (1.0, 4), (3.0, 100)])
def test_every_round_sampled_gives_the_gaussian_mechanism(z, rounds):
    """q = 1, equal weights: Y = T/(z√T) + ξ, the Gaussian mechanism with noise z/√T (dp_accounting)."""
    got = final_model_epsilon(z, 1.0, np.ones(rounds), DELTA)
    assert got == pytest.approx(gaussian_mechanism_epsilon(z / math.sqrt(rounds), 1.0, DELTA), rel=2e-3)


@pytest.mark.parametrize("z, q", [(1.0, 0.1), (0.8, 0.3), (2.0, 0.05)])
def test_one_round_is_dp_accountings_poisson_subsampled_gaussian(z, q):
    """T = 1: the canary's statistic is the subsampled Gaussian mechanism itself, whose PLD (both
    directions of add/remove) dp_accounting computes exactly up to its discretization."""
    truth = pld.from_gaussian_mechanism(
        standard_deviation=z, sampling_prob=q, value_discretization_interval=1e-5
    ).get_epsilon_for_delta(DELTA)
    assert final_model_epsilon(z, q, np.ones(1), DELTA) == pytest.approx(truth, rel=5e-3, abs=2e-3)


def test_the_final_model_test_is_below_the_accountant_and_momentum_weighs_early_rounds_more():
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = [(1.2, 0.05, 100)]  # (noise multiplier, sample rate, steps)
    prv = acc.get_epsilon(DELTA)
    plain = final_model_epsilon(1.2, 0.05, server_round_weights("fedavg", 0.0, 100), DELTA)
    momentum = final_model_epsilon(1.2, 0.05, server_round_weights("fedavgm", 0.9, 100), DELTA)
    assert 0 < momentum <= plain <= prv  # a post-processing of the rounds; unequal weights lose a little
    w = server_round_weights("fedavgm", 0.9, 3)
    assert w.tolist() == pytest.approx([1 + 0.9 + 0.81, 1 + 0.9, 1.0])
    assert server_round_weights("fedadam", 0.9, 3) is None


def test_the_estimate_recovers_the_exact_epsilon_of_sampled_canaries():
    """Hand-built DP-FedAvg canaries: each of k canaries sampled Poisson(q) in each of T rounds of FedAvgM,
    the noise on its direction N(0, z²Σw²) (in units of C), the closed-form null N(0, 1/d); the estimate's CI
    contains final_model_epsilon of the same z, q and weights."""
    z, q, rounds, k, d = 1.2, 0.05, 100, 2000, 50_000
    w = server_round_weights("fedavgm", 0.9, rounds)
    truth = final_model_epsilon(z, q, w, DELTA)
    rng = np.random.default_rng(1)
    signal = (rng.random((k, rounds)) < q) @ w
    seen = (signal + rng.standard_normal(k) * z * math.sqrt(np.sum(w**2))) / (
        z * math.sqrt(np.sum(w**2)) * math.sqrt(d)
    )
    unseen = rng.standard_normal(k) / math.sqrt(d)
    est = canary_client_estimate(seen, unseen, delta=DELTA, resamples=300, confidence=0.95, seed=0, dimension=d)
    lo, hi = est["closed_form_null"]["epsilon_ci"]
    assert 1.0 < truth and lo <= truth <= hi and hi - lo < 1.5


# -- the estimator on a Gaussian mechanism with known σ ---------------------------------------------
D, K, C, DELTA = 20_000, 500, 0.7, 1e-5


def _cosines(sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k inserted and k null unit directions; one release Σ_i C·u_i + N(0, σ²C² I); their cosines with it."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((2 * K, D))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    release = C * u[:K].sum(0) + rng.standard_normal(D) * sigma * C
    cos = u @ release / np.linalg.norm(release)
    return cos[:K], cos[K:]


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_estimate_ci_contains_the_gaussian_mechanisms_epsilon(sigma):
    seen, unseen = _cosines(sigma)
    est = canary_client_estimate(seen, unseen, delta=DELTA, resamples=400, confidence=0.95, seed=0, dimension=D)
    truth = gaussian_mechanism_epsilon(sigma, 1.0, DELTA)  # sensitivity C, noise σC: z = σ
    lo, hi = est["epsilon_ci"]
    assert lo <= truth <= hi
    lo, hi = est["closed_form_null"]["epsilon_ci"]
    assert lo <= truth <= hi
    assert est["inserted"]["n"] == est["null"]["n"] == K
    assert est["bootstrap"]["method"] == "basic" and est["bootstrap"]["resamples"] == 400


def test_without_noise_the_estimate_is_huge():
    seen, unseen = _cosines(0.0)
    est = canary_client_estimate(seen, unseen, delta=DELTA, resamples=200, confidence=0.95, seed=0, dimension=D)
    # only the other canaries hide a canary: μ/σ ≈ √(d/k) ≈ 6.3, an ε of ~ 45 at δ = 1e-5
    assert est["epsilon"] > 30 and est["epsilon_ci"][0] > 20
    assert est["closed_form_null"]["epsilon_ci"][0] > 20


def test_the_null_check_accepts_random_directions_and_rejects_inserted_ones():
    seen, unseen = _cosines(1.0)
    assert null_check(unseen, D)["p_value"] > 0.01
    assert null_check(seen, D)["p_value"] < 1e-6


# -- the control rule and the verdict --------------------------------------------------------------
def _estimate(eps, ci):
    return {"epsilon": eps, "epsilon_ci": list(ci)}


COMPARISON = {"relation": "add/remove one user", "epsilon": 2.0, "delta": 1e-5, "conversion": "the same relation"}


def test_control_threshold_is_the_accountants_epsilon_plus_a_margin_or_the_floor_when_not_private():
    assert control_threshold(None) == CONTROL_MIN_EPSILON
    assert control_threshold(float("inf")) == CONTROL_MIN_EPSILON
    assert control_threshold(2.0) == pytest.approx(3.0)
    assert control_threshold(20.0) == pytest.approx(21.0)


def test_verdict_measured_inconclusive_and_dp_bug():
    passed = dict(zip(("passed", "reason"), control_verdict(_estimate(40.0, (30.0, 55.0)), 8.0)))
    failed = dict(zip(("passed", "reason"), control_verdict(_estimate(9.0, (3.0, 14.0)), 8.0)))
    assert passed["passed"] and not failed["passed"]
    result, reason, alarm = verdict(COMPARISON, passed, _estimate(1.0, (0.2, 1.9)))
    assert (result, alarm) == ("measured", False) and "consistent with the accountant" in reason
    result, reason, _ = verdict(COMPARISON, failed, _estimate(1.0, (0.2, 1.9)))
    assert result == "inconclusive" and reason == failed["reason"]
    # the alarm wins over a failed control: an estimate whose CI lower end is above ε' is evidence either way
    result, reason, alarm = verdict(COMPARISON, failed, _estimate(4.0, (2.5, 6.0)))
    assert (result, alarm) == ("dp_bug", True) and "2.500" in reason and "2.000" in reason
    # an upper end above ε is no alarm: the estimate is not a bound
    assert verdict(COMPARISON, passed, _estimate(2.5, (1.5, 4.0)))[0] == "measured"


# -- the section, on hand-made observations (no training) ------------------------------------------
def _cfg(privacy: str = "none", **audit):
    cfg = resolve(compose_config([*TINY, "mode=federated", f"privacy={privacy}", "audit=loss"]))
    return dataclasses.replace(
        cfg, audit=dataclasses.replace(cfg.audit, attack="canary_clients", resamples=200, **audit)
    )


def _outcome(seen, unseen, *, private: bool) -> Outcome:
    k = len(seen)
    obs = {
        "k": k,
        "dimension": D,
        "clip_norm": C,
        "sample_rate": 0.5,
        "rounds": 1,
        "private": private,
        "norm": "hand-made",
        "n_examples": 1,
        "n_examples_source": "hand-made",
        "inserted_cosines": list(seen),
        "null_cosines": list(unseen),
        "rounds_sampled": [1] * k,
        "never_sampled": 0,
        "real_update_norm_median": None,
    }
    return Outcome(
        model=None,
        curve=[],
        privacy={},
        status="completed",
        engine="inprocess",
        data={"n_clients": 1000},
        observations={"canary_clients": obs},
    )


def test_a_non_private_run_is_its_own_control_and_the_section_reads_as_a_record():
    seen, unseen = _cosines(0.0)
    privacy = privacy_section(mechanism="none", unit="user", book=None, steps=1)
    section = run_canary_client_audit(
        _cfg(), None, _outcome(seen, unseen, private=False), out_dir=None, privacy=privacy
    )
    assert section["attack"] == "canary_clients" and section["result"] == "measured"
    assert section["control"]["ran_on"] == "this run (not private)" and section["control"]["passed"]
    assert section["relation"] == "add/remove one user" and section["accountant_epsilon"] is None
    assert section["n_canaries"] == K and section["dimension"] == D and section["models_trained"] == []
    assert section["delta"] == 1e-5  # default_delta(1000 + 500): the largest power of ten ≤ 1/15,000
    assert section["epsilon_estimate_ci"][0] > 20
    Audit.from_json(section, origin="test")  # the typed record accepts it


def _dp_privacy(eps: float) -> dict:
    return {"mechanism": "dpfedavg", "unit": "user", "epsilon": eps, "delta": DELTA, "events": []}


def test_a_dp_run_without_its_control_is_inconclusive():
    seen, unseen = _cosines(2.0)  # z = 2: ε ≈ 2.0 at δ = 1e-5
    section = run_canary_client_audit(
        _cfg("dpfedavg", control=False),
        None,
        _outcome(seen, unseen, private=True),
        out_dir=None,
        privacy=_dp_privacy(3.0),
    )
    assert section["result"] == "inconclusive" and "audit.control=false" in section["reason"]
    assert section["accountant_comparison"]["epsilon"] == 3.0  # the accountant's own relation, unconverted
    assert section["epsilon_estimate_ci"][0] <= 3.0


def test_an_estimate_above_the_accountant_is_a_probable_dp_bug():
    from sandbox.audit.harness import ProbableDPBug

    seen, unseen = _cosines(0.5)  # z = 0.5: ε ≈ 10, while the "accountant" claims 1
    section = run_canary_client_audit(
        _cfg("dpfedavg", control=False),
        None,
        _outcome(seen, unseen, private=True),
        out_dir=None,
        privacy=_dp_privacy(1.0),
    )
    assert section["result"] == "dp_bug" and section["verdict_inputs"]["estimate_alarm"]
    message = str(ProbableDPBug(section))
    assert "PROBABLE DP BUG" in message and "canary_clients" in message and "1.000" in message
    assert not math.isnan(section["epsilon_estimate"])
