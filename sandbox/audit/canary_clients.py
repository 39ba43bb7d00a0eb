"""The one-run ε estimate from canary clients (Andrew et al., ICLR 2024, arXiv 2302.03098).

``sandbox.federated.canary_clients`` inserted k canary clients into federated training (each a
fixed random unit direction, Poisson-sampled at rate q like every client, its update cut to the
clip norm) and kept k never-inserted (null) directions. This module turns their cosines with the
model's total change into an ε estimate and writes the record's ``audit`` section.

* **The estimate** (``canary_client_estimate``): N(μ₁, σ₁) fitted to the inserted canaries' cosines
  and N(μ₀, σ₀) to the null ones; the estimate is the ε at δ of that pair of Gaussians
  (``epsilon_two_gaussians``): the ε of the mechanism "release one draw of N(μ₁, σ₁) if the canary
  is in, of N(μ₀, σ₀) if not", which is how a canary's statistic behaves. Its CI: a two-sample
  (unpaired) basic (reverse-percentile) bootstrap of the whole fit (``scipy.stats.bootstrap``;
  ``BOOTSTRAP_METHOD`` says why not percentile). Beside it, the paper's closed-form null (Sec. 4): the
  cosine of a uniformly random direction with any fixed vector is ≈ N(0, 1/d) in d dimensions, so
  only the inserted canaries are fitted.
* **The headline** (``epsilon_estimate``) of the final model is the closed-form-null variant: the null
  directions are drawn independently of training, so their law is known exactly, and fitting it from
  k samples only adds sampling error, which the ε of two Gaussians amplifies (it is smallest when the
  spreads are equal; measured on a tiny DP-FedAvg run at accountant ε = 1.99, k = 50: closed-form
  0.94 [0, 1.51], both fitted 4.35 [0, 8.10]). The empirical-null fit is recorded beside it
  (``empirical_null``), and the null sample is checked against N(0, 1/d) (``null_check``, a KS test).
  The all-iterates statistic (a maximum over rounds) has no simple closed-form null: it uses both fits.
* **What it is and is not**: an *estimate* of the ε a worst-case client (its update as large as
  the clip norm allows, pointing where nothing else does) actually gets from this run, under the
  Gaussian approximation of its statistic; not a bound, not at any confidence. The final-model
  statistic assumes an adversary who sees only the final model; ``audit.canary_all_iterates``
  adds the all-iterates one (the largest cosine with any round's released aggregate). The
  accountant's ε holds for both (it covers every round's release).
* **What the estimate should be** (``final_model_epsilon``, the record's ``model_epsilon``): under
  DP-FedAvg with a fixed clip norm, the final-model statistic of a worst-case canary has an exact ε
  that depends only on z, q, the rounds and the server optimizer's round weights. With the default
  population (q = 0.05, 100 rounds, FedAvgM 0.9) it is 0.91 / 2.59 / 3.98 at accountant ε = 1 / 4 / 8
  (PRV): the final-model test is nearly as strong as the accountant allows at ε = 1, so an estimate
  near ε there is the truth, not an alarm, and an upper CI end below ε would need a CI narrower
  than about ±0.1.
* **Relation**: a canary client is one extra client: add/remove one ``privacy.unit`` (user or
  workspace), exactly the accountant's relation, so its ε is compared unconverted
  (``harness.accountant_comparison`` with the identity relation). The canaries are counted in the
  population (DP-FedAvg's denominator q·(N + k)); the real clients' accounting (q, z, rounds) is
  what it would be without them.
* **Positive control**: the same config on the same federated pipeline without DP (the run itself
  when it is not private), with the same canaries (seeded from the run's seed). For a DP run it
  passes when its estimate's CI lower end exceeds the run's accountant ε + ``CONTROL_MARGIN``: the
  statistic, on this pipeline and model, measures more leakage than the run's ε allows, so a low
  estimate under DP is the noise's doing, not a blind statistic's. A non-private run is its own
  control and passes above ``CONTROL_MIN_EPSILON`` (clearly not private).
* **Result**: ``dp_bug`` when the (final-model) estimate's CI lower end exceeds the accountant's ε
  (the run then fails: ``ProbableDPBug``); else ``inconclusive`` when the control did not pass;
  else ``measured``.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import scipy.stats

from sandbox.audit.gaussian_epsilon import (  # noqa: F401  (re-exported: the estimate's numerics)
    epsilon_two_gaussians,
    final_model_epsilon,
    server_round_weights,
)
from sandbox.audit.harness import AuditRelation, accountant_comparison, control_config, describe_comparison, model_entry
from sandbox.config import RunConfig
from sandbox.prepare import Prepared, Seeds
from sandbox.privacy.delta import default_delta
from sandbox.privacy.relations import ADD_REMOVE
from sandbox.training import train_model

# A DP run's control passes when its estimate's CI lower end exceeds the run's accountant ε +
# CONTROL_MARGIN: the control's estimate would have raised the main run's DP-bug alarm with a nat to
# spare, so the statistic can see leakage beyond the ε being tested. A non-private run (its own
# control) passes above CONTROL_MIN_EPSILON: ε = 8 is a likelihood ratio of e^8 ≈ 3000, which no one
# would call private. (Measured on the default population, data=personal, k = 100: FedAvg's
# final-model estimate is 6.88 [3.72, 9.54], so its control covers DP runs up to ε ≈ 2.7.)
CONTROL_MIN_EPSILON = 8.0
CONTROL_MARGIN = 1.0


def model_epsilon(cfg: RunConfig, privacy: dict, obs: dict, *, delta: float) -> dict:
    """``final_model_epsilon`` for this run, or why it is not computed (the record's ``model_epsilon``)."""
    out = {
        "statistic": "final-model cosine test against a worst-case canary client, under the run's own noise only",
        "assumes": "fixed clip norm; the canary orthogonal to every other update; noise z·C per coordinate on "
        "each round's sum; Poisson sampling at q; the server optimizer's round weights",
    }
    why = None
    if not obs.get("private"):
        why = "not private: no noise hides a canary"
    elif cfg.privacy.clipping != "fixed":
        why = f"privacy.clipping={cfg.privacy.clipping}: the clip norm changes by round and is not recorded by round"
    weights = server_round_weights(cfg.federation.server_optimizer, cfg.federation.server_momentum, obs["rounds"])
    if why is None and weights is None:
        why = f"federation.server_optimizer={cfg.federation.server_optimizer}: its step is not linear in the deltas"
    z = privacy.get("noise_multiplier")
    if why is None and not z:
        why = "no noise multiplier recorded"
    if why is not None:
        return {**out, "epsilon": None, "reason": why}
    eps = final_model_epsilon(float(z), float(obs["sample_rate"]), weights, delta)
    return {
        **out,
        "epsilon": _finite(eps),
        "delta": float(delta),
        "inputs": {
            "noise_multiplier": float(z),
            "sample_rate": float(obs["sample_rate"]),
            "rounds": int(obs["rounds"]),
            "server_optimizer": cfg.federation.server_optimizer,
            "server_momentum": cfg.federation.server_momentum,
        },
        "reading": "the ε this test would measure with infinitely many canaries when real training adds nothing "
        "to the model change's norm: the estimate should not exceed it beyond its CI; how close it is to the "
        "accountant's ε says how tight the accountant is for this adversary",
    }


# -- the estimate from canaries' cosines ------------------------------------------------------------
def _fit(x: np.ndarray) -> dict:
    return {"n": int(len(x)), "mean": float(np.mean(x)), "std": float(np.std(x, ddof=1))}


def _eps_or_inf(mu0, std0, mu1, std1, delta) -> float:
    if not (std0 > 0 and std1 > 0):  # a degenerate (bootstrap) sample: the two are told apart exactly
        return math.inf if mu0 != mu1 else 0.0
    return epsilon_two_gaussians(mu0, std0, mu1, std1, delta)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


# The bootstrap interval: "basic" (reverse percentile), not "percentile". The fitted ε is biased upwards: it
# is smallest when the two fitted spreads are equal, and sampling error in either spread raises it (at
# k = 500, d = 20,000, σ = 1 the mean estimate is 5.4 for a true 4.38); resampling adds the same error
# again, so a percentile interval sits above the truth. Measured on the Gaussian mechanism of the tests,
# 40 replicates per σ ∈ {0.5, 1, 2}, 95% intervals: percentile covered the true ε 33, 24, 23 times and
# had its lower end above it 7, 16, 17 times (a false DP-bug alarm in up to 40% of correct runs); basic
# covered it 37, 38, 38 times, lower end above it 1, 2, 2 times.
BOOTSTRAP_METHOD = "basic"


def _bootstrap_ci(samples: tuple, statistic, *, resamples: int, confidence: float, seed: int) -> list:
    res = scipy.stats.bootstrap(
        samples,
        statistic,
        n_resamples=int(resamples),
        confidence_level=float(confidence),
        method=BOOTSTRAP_METHOD,
        paired=False,
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    # ε ≥ 0: a basic interval (2·ε̂ − upper quantile) can reach below 0, or −∞ when a resample is degenerate
    return [max(0.0, float(low)) if not math.isnan(low) else 0.0, _finite(high)]


def canary_client_estimate(
    seen,
    unseen,
    *,
    delta: float,
    resamples: int,
    confidence: float,
    seed: int,
    dimension: int | None = None,
) -> dict:
    """ε estimate (and bootstrap CI) from the inserted (``seen``) and null (``unseen``) canaries' statistics.

    Two Gaussians are fitted (mean, std with ddof 1) and their ε at ``delta`` is the estimate. The CI
    resamples both samples independently (two-sample, unpaired; ``BOOTSTRAP_METHOD``, ``resamples``
    resamples at ``confidence``), its lower end clipped at 0. With ``dimension`` d, the closed-form-null variant (null N(0, 1/d), the
    paper's Sec. 4; only ``seen`` is resampled) is reported beside it. An ε that is infinite (a sample
    without spread) is recorded as None.
    """
    seen, unseen = np.asarray(seen, dtype=np.float64), np.asarray(unseen, dtype=np.float64)
    if min(len(seen), len(unseen)) < 2:
        raise ValueError(f"need ≥ 2 inserted and ≥ 2 null statistics, got {len(seen)} and {len(unseen)}")
    ins, null = _fit(seen), _fit(unseen)

    def stat(s, u):
        return _eps_or_inf(np.mean(u), np.std(u, ddof=1), np.mean(s), np.std(s, ddof=1), delta)

    boot = {"method": BOOTSTRAP_METHOD, "resamples": int(resamples), "confidence": float(confidence), "paired": False}
    out = {
        "epsilon": _finite(stat(seen, unseen)),
        "epsilon_ci": _bootstrap_ci((seen, unseen), stat, resamples=resamples, confidence=confidence, seed=seed),
        "delta": float(delta),
        "inserted": ins,
        "null": null,
        "bootstrap": {**boot, "samples": "inserted and null, each resampled"},
    }
    if dimension is not None:
        null_std = float(dimension) ** -0.5

        def stat_closed(s):
            return _eps_or_inf(0.0, null_std, np.mean(s), np.std(s, ddof=1), delta)

        out["closed_form_null"] = {
            "epsilon": _finite(stat_closed(seen)),
            "epsilon_ci": _bootstrap_ci((seen,), stat_closed, resamples=resamples, confidence=confidence, seed=seed),
            "null": {"mean": 0.0, "std": null_std, "law": f"N(0, 1/d), d = {int(dimension)}"},
            "bootstrap": {**boot, "samples": "inserted only (the null is fixed)"},
        }
    return out


# -- the audit section ------------------------------------------------------------------------------
def control_threshold(accountant_epsilon: float | None) -> float:
    """The ε the control's CI lower end must exceed (module docstring; CONTROL_MIN_EPSILON, CONTROL_MARGIN)."""
    if accountant_epsilon is None or not math.isfinite(accountant_epsilon):
        return CONTROL_MIN_EPSILON
    return float(accountant_epsilon) + CONTROL_MARGIN


def control_verdict(estimate: dict, threshold: float) -> tuple[bool, str]:
    """(passed, reason) of a control's estimate against ``threshold``."""
    low = estimate["epsilon_ci"][0]
    if estimate["epsilon"] is None and low is None:  # no spread at all: the canaries are read exactly
        return True, "control: the canaries' cosines have no spread (ε infinite): the statistic sees them exactly"
    if low is not None and low > threshold:
        return True, f"control's ε estimate CI lower end {low:.2f} > {threshold:.2f}: the statistic sees canaries"
    said = "none" if low is None else f"{low:.2f}"
    return False, (
        f"positive control failed: without DP the ε estimate's CI lower end is {said}, not above {threshold:.2f} "
        f"(the run's accountant ε + {CONTROL_MARGIN:g}; {CONTROL_MIN_EPSILON:g} for a non-private run): the "
        "canaries are not seen well enough "
        "on this pipeline for a low estimate under DP to mean anything"
    )


def verdict(comparison: dict, control: dict, main: dict) -> tuple[str, str, bool]:
    """(result, reason, alarm): dp_bug (main CI lower end > ε') > inconclusive (control failed) > measured."""
    low, eps = main["epsilon_ci"][0], comparison.get("epsilon")
    est = "∞" if main["epsilon"] is None else f"{main['epsilon']:.3f}"
    ci = "[" + ", ".join("∞" if v is None else f"{v:.3f}" for v in main["epsilon_ci"]) + "]"
    if eps is not None and (low is None and main["epsilon"] is None or low is not None and low > eps):
        return (
            "dp_bug",
            f"the canary clients' ε estimate {est}, CI {ci}, has its lower end above the accountant's "
            f"ε = {eps:.3f} (δ = {comparison['delta']:.3g}; {comparison['conversion']})",
            True,
        )
    if not control["passed"]:
        return "inconclusive", control["reason"], False
    if eps is None:
        return "measured", f"ε estimate {est}, CI {ci}; {control['reason']}; {comparison['reason']}", False
    return (
        "measured",
        f"ε estimate {est}, CI {ci}, lower end ≤ the accountant's ε = {eps:.3f}: consistent with the "
        f"accountant; {control['reason']}",
        False,
    )


def _observations(outcome, what: str) -> dict:
    obs = (outcome.observations or {}).get("canary_clients")
    if obs is None:
        raise RuntimeError(
            f"audit=canary_clients: the {what} has no canary-client observations (Outcome.observations"
            "['canary_clients']): it was not trained by the federated trainer with the canary observer"
        )
    return obs


def null_check(null, dimension: int) -> dict:
    """The never-inserted directions against their exact law: a Kolmogorov–Smirnov test of their cosines
    against N(0, 1/d) (``scipy.stats.kstest``). A null direction is independent of training, so its cosine
    with any vector has this law; a small p-value says the observer is broken (e.g. a null was inserted)."""
    test = scipy.stats.kstest(np.asarray(null, dtype=np.float64), "norm", args=(0.0, float(dimension) ** -0.5))
    return {"ks_statistic": float(test.statistic), "p_value": float(test.pvalue), "law": "N(0, 1/d)"}


def estimates(obs: dict, cfg: RunConfig, *, delta: float) -> dict:
    """The estimates of one run's observations: ``headline`` (final model, closed-form null),
    ``empirical_null`` (final model, both samples fitted) and, if recorded, ``all_iterates``."""
    a = cfg.audit
    kw = dict(delta=delta, resamples=a.resamples, confidence=a.confidence, seed=cfg.seed)
    final = canary_client_estimate(obs["inserted_cosines"], obs["null_cosines"], dimension=obs["dimension"], **kw)
    closed = final.pop("closed_form_null")
    out = {
        "headline": {**closed, "inserted": final["inserted"], "delta": final["delta"]},
        "empirical_null": final,
    }
    if "all_iterates" in obs:
        it = obs["all_iterates"]
        out["all_iterates"] = canary_client_estimate(it["inserted_max_cosines"], it["null_max_cosines"], **kw)
    return out


def _ci_text(ci) -> str:
    return "[" + ", ".join("∞" if v is None else f"{v:.3f}" for v in ci) + "]"


def run_canary_client_audit(cfg: RunConfig, data: Prepared, outcome, *, out_dir, privacy: dict) -> dict:
    """``audit=canary_clients`` on the run's canary clients: the record's ``audit`` section (module docstring)."""
    started = time.perf_counter()
    a = cfg.audit
    obs = _observations(outcome, "run")
    unit = privacy["unit"]
    rel = ADD_REMOVE[unit]
    relation = AuditRelation(
        str(rel),
        {"*": rel},
        f"a canary client is one extra client (one {unit}) in the population, Poisson-sampled at q like every "
        f"client: add/remove one {unit}, the accountant's own relation (no conversion)",
    )
    comparison = accountant_comparison(relation, privacy)
    comparable = "epsilon" in comparison
    n_real, k = int(outcome.data.get("n_clients", 0)), int(obs["k"])
    delta = comparison["delta"] if comparable else default_delta(n_real + k)
    main = estimates(obs, cfg, delta=delta)
    head = main["headline"]
    threshold = control_threshold(privacy.get("epsilon"))
    control_cfg, pipeline, retrain = control_config(cfg)
    # the same canaries: control_config's privacy=none keeps PrivacyConfig's default clip norm, and the
    # canary's norm without DP is privacy.clip_norm, so carry the run's over (ignored by FedAvg otherwise)
    control_cfg = dataclasses.replace(
        control_cfg, privacy=dataclasses.replace(control_cfg.privacy, clip_norm=cfg.privacy.clip_norm)
    )
    models: list = []
    control: dict = {"pipeline": pipeline, "privacy": "none", "threshold": threshold}
    if not retrain:
        control_est, control_obs = main, obs
        control["ran_on"] = "this run (not private)"
    elif not a.control:
        control_est, control_obs = None, None
        control.update(ran_on="none", passed=False, reason="positive control disabled (audit.control=false)")
    else:
        if control_cfg.mode != "federated":  # check_canary_config refuses audit.control_on=central before training
            raise RuntimeError(f"canary_clients control must stay federated, got mode={control_cfg.mode}")
        control_outcome = train_model(control_cfg, data, Seeds.from_seed(cfg.seed))
        control_obs = _observations(control_outcome, "positive control")
        control_est = estimates(control_obs, control_cfg, delta=delta)
        control["ran_on"] = "control run"
        models.append(model_entry("positive control", control_outcome.privacy))
    if control_est is not None:
        passed, reason = control_verdict(control_est["headline"], threshold)
        control.update(
            passed=passed,
            reason=reason,
            rule=f"ε estimate CI lower end > accountant ε + {CONTROL_MARGIN:g} ({CONTROL_MIN_EPSILON:g} if not private)",
            epsilon_estimate=control_est["headline"]["epsilon"],
            epsilon_estimate_ci=control_est["headline"]["epsilon_ci"],
            audit={
                "attack": "canary_clients",
                "result": "measured",
                "n_canaries": a.canary_clients,
                "epsilon_estimate": control_est["headline"]["epsilon"],
                "epsilon_estimate_ci": control_est["headline"]["epsilon_ci"],
                "inserted": control_est["headline"]["inserted"],
                "empirical_null": control_est["empirical_null"],
                "rounds_sampled": _sampled_summary(control_obs),
            },
        )
    result, reason, alarm = verdict(comparison, control, head)
    eps = privacy.get("epsilon")
    section = {
        "attack": "canary_clients",
        "level": unit,
        "threat": "final model (white box: its parameters)"
        + (" and every round's aggregate (all iterates)" if "all_iterates" in main else ""),
        "result": result,
        "reason": reason,
        "relation": relation.description,
        "relation_note": relation.note,
        "accountant_epsilon": eps,
        "accountant_comparison": comparison,
        "comparable": comparable,
        "unit_compared": describe_comparison(relation, comparison, privacy),
        "delta": delta,
        "delta_note": "the accountant's δ" if comparable else f"not private: default_delta(N + k) = {delta:g}",
        "epsilon_estimate": head["epsilon"],
        "epsilon_estimate_ci": head["epsilon_ci"],
        "epsilon_estimate_kind": "estimate (Gaussian fit of the canaries' cosines), not a bound",
        "estimator": "final-model cosines; inserted canaries fitted by N(μ, σ), null N(0, 1/d) in closed form "
        "(Andrew et al. Sec. 4; exact for directions independent of training); ε of the two Gaussians at δ",
        "inserted": head["inserted"],
        "null": head["null"],
        "bootstrap": head["bootstrap"],
        "empirical_null": {
            **main["empirical_null"],
            "note": "both samples fitted (Andrew et al. Sec. 3): the null's own sampling error widens the CI",
        },
        "null_check": null_check(obs["null_cosines"], obs["dimension"]),
        "model_epsilon": model_epsilon(cfg, privacy, obs, delta=delta),
        "n_canaries": k,
        "dimension": int(obs["dimension"]),
        "clip_norm": obs["clip_norm"],
        "canary_norm": obs["norm"],
        "real_update_norm_median": obs.get("real_update_norm_median"),
        "sample_rate": obs["sample_rate"],
        "population": {
            "real_clients": n_real,
            "canary_clients": k,
            "expected_per_round": obs["sample_rate"] * (n_real + k),
            "denominator": (
                f"q·(N + k) = {obs['sample_rate']:g}·({n_real} + {k})"
                if obs["private"]
                else "FedAvg: the sum of the sampled clients' example counts (a canary weighs "
                f"{obs['n_examples']} examples: {obs['n_examples_source']})"
            ),
            "real_clients_accounting": "unchanged: each real client's ε depends on q, z and the rounds only",
        },
        "rounds_sampled": _sampled_summary(obs),
        "control": control,
        "verdict_inputs": {
            "control_passed": control["passed"],
            "relation": relation.description,
            "accountant_epsilon": eps,
            "delta": privacy.get("delta"),
            "unit": unit,
            "converted_epsilon": comparison.get("epsilon"),
            "converted_delta": comparison.get("delta"),
            "epsilon_estimate_ci_low": head["epsilon_ci"][0],
            "estimate_alarm": alarm,
            "control_threshold": threshold,
        },
        "models_trained": models,
        "timing": {"audit_seconds": round(time.perf_counter() - started, 2)},
    }
    if "all_iterates" in main:
        it = main["all_iterates"]
        low = it["epsilon_ci"][0]
        section["all_iterates"] = {
            **it,
            "statistic": obs["all_iterates"]["statistic"],
            "above_accountant": bool(comparable and low is not None and low > comparison["epsilon"]),
            "raises_alarm": False,
            "note": "empirical null (the largest of T cosines has no simple closed form); the maximum is not "
            "Gaussian and the fit is the paper's: an estimate only, so it raises no alarm (above_accountant "
            "says whether its CI lower end passed ε)",
        }
    return section


def _sampled_summary(obs: dict) -> dict:
    rounds = np.asarray(obs["rounds_sampled"])
    return {
        "rounds": int(obs["rounds"]),
        "mean": float(rounds.mean()) if len(rounds) else 0.0,
        "max": int(rounds.max(initial=0)),
        "never_sampled": int(obs["never_sampled"]),
        "never_sampled_kept": True,
        "note": "canaries never sampled stay in the inserted sample (as in Andrew et al.): the accountant's ε "
        "is for a client present in the population and sampled at q, so the statistic must not condition on it",
    }
