"""The audit of a run's own model: attack → scores → metrics with CIs → empirical ε → control → result.

``run_audit`` is called by ``sandbox.run`` after training, on the very model the run trained.
It returns the record's ``audit`` section and writes ``roc.png`` beside the record.

* **Attacks**: ``loss`` (no shadows), ``lira`` and ``rmia`` (shadows trained by the run's own
  harness, ``sandbox.audit.shadows``), ``canary`` (planted vs fresh canaries, exposure).
* **Empirical ε**: the threshold is chosen on one half of the targets (best TPR at
  ``audit.threshold_fpr``) and counted on the other; ``eps_lower_bound`` turns the counts
  into a Clopper–Pearson bound at confidence 1 − alpha and at the run's δ. As in many-target
  audits, the targets are treated as independent trials of one training run.
* **Positive control**: the same attack on the same pipeline without DP (the run itself when
  it is not private). If the control does not catch members (lower CI end of TPR at 1% FPR
  ≤ ``audit.control_tpr_floor``) the result is ``inconclusive``: a weak attack is not
  evidence of privacy.
* **DP bug check**: an empirical lower bound above the accountant's ε (for a comparable
  unit) means the privacy claim is wrong somewhere: the result is ``dp_bug`` and the run fails.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sandbox.audit.attacks import lira_offline, lira_online, loss_attack, rmia
from sandbox.audit.bounds import eps_lower_bound, one_run_eps_lower_bound
from sandbox.audit.exposure import exposure_by_fit, exposure_by_rank, one_run_guesses, search_secret_space
from sandbox.audit.metrics import attack_metrics, choose_threshold, plot_roc, rates_at_threshold, split_for_threshold
from sandbox.audit.shadows import train_shadows
from sandbox.audit.targets import (
    build_population, example_stats, model_logits, moved_rows_stats, trained_user_mask, unit_stats,
)
from sandbox.config import ConfigError, PrivacyConfig, RunConfig
from sandbox.prepare import Prepared, Seeds
from sandbox.record import write_atomic
from sandbox.tasks import emoji
from sandbox.train.progress import progress_bar

FPRS = (0.001, 0.01)


class ProbableDPBug(RuntimeError):
    """An empirical ε lower bound above the accountant's ε: the DP claim does not hold as implemented."""

    def __init__(self, audit: dict):
        lb, eps = max(audit["eps_lower_bound"], audit["one_run_eps_lower_bound"] or 0.0), audit["accountant_epsilon"]
        super().__init__(f"PROBABLE DP BUG: the {audit['attack']} audit measured ε ≥ {lb:.3f} with confidence "
                         f"{1 - audit['eps_lower_bound_inputs']['alpha']:.0%}, above the accountant's ε = {eps:.3f} "
                         f"({audit['unit_compared']}); see record.json → audit")


@dataclass
class AttackResult:
    scores: np.ndarray
    members: np.ndarray  # bool, the truth
    metrics: dict
    details: dict = field(default_factory=dict)


def run_audit(cfg: RunConfig, data: Prepared, outcome, *, out_dir: Path, privacy: dict) -> dict:
    """Audit ``outcome.model`` as ``cfg.audit`` says; returns the record's ``audit`` section."""
    a, started = cfg.audit, time.perf_counter()
    with progress_bar(cfg.progress, unit="shadows trained", label="audit", show_loss=False) as show:
        main = attack_model(cfg, data, outcome.model, outcome.trained_users, show=show)
        control = positive_control(cfg, data, main, show=show)
    bound = empirical_epsilon(main, cfg, delta=privacy["delta"] or 0.0)
    one_run = one_run_bound(main.details, delta=privacy["delta"] or 0.0)
    comparable, unit_compared = comparable_unit(cfg, data, privacy)
    curves = {f"{a.attack} ({_privacy_label(privacy)})": (main.scores, main.members)}
    if control["ran_on"] == "control run":
        curves[f"{a.attack} control ({control['pipeline']})"] = (control.pop("_scores"), control.pop("_members"))
    plot_roc(curves, out_dir / "roc.png", title=f"{a.attack}, {a.level} level, {a.threat} threat")
    write_atomic(out_dir / "audit_scores.npz", lambda p: _save_scores(p, curves))
    eps = privacy["epsilon"]
    highest = max(bound["eps_lower_bound"], one_run or 0.0)
    if comparable and eps is not None and highest > eps:
        result, reason = "dp_bug", "empirical ε lower bound exceeds the accountant's ε"
    elif not control["passed"]:
        result, reason = "inconclusive", control["reason"]
    else:
        result, reason = "measured", "control caught members; lower bound within the accountant's ε" \
            if comparable else "control caught members; no accountant ε for this unit to compare with"
    m, shadow_timing = main.metrics, main.details.pop("timing", {})
    return {
        "attack": a.attack, "level": a.level, "threat": a.threat, "online": a.online if a.attack in ("lira", "rmia")
        else None, "auc": m["auc"], "auc_ci": m["auc_ci"],
        "tpr_at_0.1pct_fpr": m["tpr_at_fpr"]["0.001"], "tpr_at_0.1pct_fpr_ci": m["tpr_at_fpr_ci"]["0.001"],
        "tpr_at_1pct_fpr": m["tpr_at_fpr"]["0.01"], "tpr_at_1pct_fpr_ci": m["tpr_at_fpr_ci"]["0.01"],
        "n_members": m["n_members"], "n_nonmembers": m["n_nonmembers"], "bootstrap": m["bootstrap"],
        "eps_lower_bound": bound["eps_lower_bound"], "eps_lower_bound_inputs": bound,
        "accountant_epsilon": eps, "comparable": comparable, "unit_compared": unit_compared,
        "control": control, "result": result, "reason": reason,
        "one_run_eps_lower_bound": one_run,
        "verdict_inputs": {"control_passed": control["passed"], "eps_lower_bound": bound["eps_lower_bound"],
                           "one_run_eps_lower_bound": one_run,
                           "accountant_epsilon": eps, "delta": privacy["delta"], "unit": privacy["unit"]},
        "roc_plot": "roc.png", "scores_file": "audit_scores.npz", **main.details,
        "timing": {"audit_seconds": round(time.perf_counter() - started, 2), **shadow_timing},
    }


def attack_model(cfg: RunConfig, data: Prepared, model, trained_users: np.ndarray, *, show=None,
                 extraction: bool = True) -> AttackResult:
    """Run ``cfg.audit.attack`` against ``model`` (trained on ``trained_users``).

    ``extraction=False`` skips the canary audit's secret-space search (positive controls)."""
    a = cfg.audit
    if a.attack == "canary":
        return canary_attack(cfg, data, model, trained_users, extraction=extraction and a.extraction)
    population = build_population(data, level=a.level)
    members = population.units_of_users(trained_user_mask(population, trained_users))
    initial = data.new_model(cfg, Seeds.from_seed(cfg.seed))  # the run's own initialisation (white box)
    target = unit_stats(model, population, threat=a.threat, k=a.topk, initial=initial)
    details: dict = {"population": {"units": population.n_units, "users": len(population.users)}}
    if a.attack == "loss":
        scores = loss_attack(target.confidence)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x5AD0]))
        shadows = train_shadows(cfg, data, population, n_shadows=a.shadows, threat=a.threat, k=a.topk,
                                workers=a.workers, rng=rng, progress=lambda i, n: show and show(i, n, None))
        details.update(shadows={"n": a.shadows, "workers": a.workers, "seconds": round(shadows.seconds, 1),
                                "engine": "inprocess" if cfg.mode == "federated" else "central"},
                       timing={"shadows_seconds": round(shadows.seconds, 1)})
        if a.attack == "lira":
            lira = lira_online if a.online else lira_offline
            scores = lira(target.confidence, shadows.confidence, shadows.keep)
        else:
            scores = rmia(target.probability, shadows.probability, shadows.keep,
                          population_prob=target.probability, population_shadow_probs=shadows.probability,
                          gamma=a.rmia_gamma, offline_a=None if a.online else a.rmia_offline_a)
    return AttackResult(scores=scores, members=members, metrics=_metrics(scores, members, cfg), details=details)


def canary_attack(cfg: RunConfig, data: Prepared, model, trained_users: np.ndarray, *,
                  extraction: bool = False) -> AttackResult:
    """Planted canaries whose host trained (members) vs fresh or left-out canaries (non-members).

    Candidates are scored with their own reaction, fresh texts with a reaction drawn the same
    way. Under ``data.canary_inclusion=bernoulli`` the candidates whose host trained also give
    the one-run bound (Steinke et al. 2023): each was planted by a fair coin, independently.
    """
    a, manifest = cfg.audit, data.manifest
    if manifest is None or not manifest.planted or not manifest.fresh:
        raise ConfigError("audit=canary needs a corpus with planted and fresh canaries (data=synthetic, "
                          "data.n_canaries ≥ 1, data.n_fresh_canaries ≥ 1)")
    class_id = {c: i for i, c in enumerate(data.classes)}
    user_index = {u: i for i, u in enumerate(data.corpus.user_ids)}
    candidates = [c for c in manifest.inserted if c.reaction in class_id]
    planted = np.array([c.planted for c in candidates])
    host_trained = np.isin([[user_index[u] for u in c.user_ids] for c in candidates], trained_users).any(axis=1)
    trained = planted & host_trained
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xCA7A]))
    fresh_labels = rng.integers(len(data.classes), size=len(manifest.fresh))  # same law as the planted ones
    candidate_tokens = emoji.featurize([c.text for c in candidates], config=cfg.task)
    fresh_tokens = emoji.featurize(list(manifest.fresh), config=cfg.task)
    labels = np.array([class_id[c.reaction] for c in candidates])
    stat, see = _canary_statistic(cfg, data, model)
    seen = see(candidate_tokens), see(fresh_tokens)
    scores = np.concatenate([stat(seen[0], labels), stat(seen[1], fresh_labels)])
    members = np.concatenate([trained, np.zeros(len(manifest.fresh), bool)])
    # exposure: each planted canary ranked among the fresh texts scored with its own reaction
    rank, fit = np.zeros(len(candidates)), np.zeros(len(candidates))
    for i in np.flatnonzero(planted):
        reference = stat(seen[1], np.full(len(manifest.fresh), labels[i]))
        rank[i] = exposure_by_rank(scores[i:i + 1], reference)[0]
        try:
            fit[i] = exposure_by_fit(scores[i:i + 1], reference)[0]
        except ValueError:  # e.g. threat=topk: every fresh canary scores the same, nothing to fit
            fit[i] = np.nan
    details = {"canaries": {
        "planted": int(planted.sum()), "planted_in_trained_users": int(trained.sum()),
        "left_out_by_coin": int((~planted).sum()), "fresh": len(manifest.fresh),
        "repeats": candidates[0].repeats, "users_per_canary": len(candidates[0].user_ids),
        "exposure_by_rank": _summary(rank[planted], trained[planted]),
        "exposure_by_fit": _summary(fit[planted], trained[planted], what="a distribution fitted"),
        "max_exposure_possible_by_rank": float(np.log2(len(manifest.fresh) + 1)),
        **_one_run(cfg, scores[:len(candidates)], planted, host_trained)}}
    if extraction:
        tried = np.flatnonzero(trained)
        details["extraction"] = search_secret_space(
            stat, see, [candidates[i].text for i in tried], labels[tried], template=manifest.template,
            secret_format=_secret_format(manifest), featurize=lambda texts: emoji.featurize(texts, config=cfg.task))
    return AttackResult(scores=scores, members=members, metrics=_metrics(scores, members, cfg), details=details)


def _canary_statistic(cfg: RunConfig, data: Prepared, model):
    """(stat, see): the threat model's statistic ``stat(seen, reactions)`` of what it ``see``s of
    texts' tokens (the logits, or the tokens themselves for the white box)."""
    a = cfg.audit
    if a.threat == "whitebox":  # how far the rows of each canary's words moved from the initialisation
        initial = data.new_model(cfg, Seeds.from_seed(cfg.seed))

        def stat(tokens, y):
            return moved_rows_stats(model, initial, tokens, np.arange(len(tokens)), len(tokens)).confidence
        return stat, (lambda tokens: tokens)

    def stat(logits, y):
        return example_stats(logits, _as_labels(y), threat=a.threat, k=a.topk)[0]
    return stat, (lambda tokens: model_logits(model, tokens))


def _secret_format(manifest) -> str:
    return "compact" if "as one word" in manifest.secret_space else "spaced"


def _one_run(cfg: RunConfig, scores: np.ndarray, planted: np.ndarray, host_trained: np.ndarray) -> dict:
    """Steinke et al.'s one-run bound on the candidates whose host trained (their coins are fair)."""
    if planted.all():
        return {"one_run_eps_lower_bound": None,
                "one_run_note": "not computed: needs data.canary_inclusion=bernoulli (each canary planted "
                                "independently with probability 1/2); this corpus plants all of them"}
    m = int(host_trained.sum())
    k = max(1, round(cfg.audit.one_run_guess_fraction * m / 2))
    if m == 0 or 2 * k > m:
        return {"one_run_eps_lower_bound": None, "one_run_note": f"not computed: {m} candidate(s) with a trained host"}
    r, v = one_run_guesses(scores[host_trained], planted[host_trained], n_guess_in=k, n_guess_out=k)
    return {"one_run": {"m": m, "guesses": r, "correct": v, "guess_in": k, "guess_out": k, "alpha": cfg.audit.alpha},
            "one_run_eps_lower_bound": None}  # filled in by run_audit, at the run's δ


def one_run_bound(details: dict, *, delta: float) -> float | None:
    """The one-run ε lower bound of a canary audit at δ, or None when it does not apply."""
    one = details.get("canaries", {}).get("one_run")
    if one is None:
        return None
    one["delta"] = delta
    bound = one_run_eps_lower_bound(one["m"], one["guesses"], one["correct"], delta=delta, alpha=one["alpha"])
    details["canaries"]["one_run_eps_lower_bound"] = bound
    return bound


def positive_control(cfg: RunConfig, data: Prepared, main: AttackResult, *, show=None) -> dict:
    """The same attack on the same pipeline without DP; passes when it catches members.

    ``audit.control_on=central`` (federated runs): on a *central* non-private model of the same
    data instead. Federated averaging without DP can be out of the attack's reach (each user is
    one of hundreds per round, a few rounds in all), so its own control fails whatever the DP
    run does; the central model shows that the attack finds members of this data where a model
    holds them. The record says which control ran (``control.pipeline``).
    """
    a = cfg.audit
    central = a.control_on == "central" and cfg.mode != "central"
    pipeline = "central, no DP" if central or cfg.mode == "central" else f"{cfg.mode}, no DP"
    if cfg.privacy.mechanism == "none" and not central:
        metrics, ran_on, extra = main.metrics, "this run (not private)", {}
    elif not a.control:
        return {"ran_on": "none", "passed": False, "reason": "positive control disabled (audit.control=false)"}
    else:
        from sandbox.run import train_model

        control_cfg = dataclasses.replace(cfg, progress=False, mode="central" if central else cfg.mode,
                                          privacy=PrivacyConfig(mechanism="none", unit="example" if central or
                                                                cfg.mode == "central" else cfg.federation.unit))
        outcome = train_model(control_cfg, data, Seeds.from_seed(cfg.seed))
        result = attack_model(control_cfg, data, outcome.model, outcome.trained_users, show=show, extraction=False)
        metrics, ran_on = result.metrics, "control run"
        extra = {"_scores": result.scores, "_members": result.members}
    low = metrics["tpr_at_fpr_ci"]["0.01"][0]
    passed = low > a.control_tpr_floor
    reason = (f"control caught members: TPR at 1% FPR {metrics['tpr_at_fpr']['0.01']:.3f}, CI from {low:.3f} "
              f"> {a.control_tpr_floor}" if passed else
              f"positive control failed: without DP the attack's TPR at 1% FPR is "
              f"{metrics['tpr_at_fpr']['0.01']:.3f} (CI from {low:.3f}, needs > {a.control_tpr_floor}); "
              "the attack is too weak for this audit to support any claim")
    return {"ran_on": ran_on, "pipeline": pipeline, "privacy": "none", "auc": metrics["auc"], "auc_ci": metrics["auc_ci"],
            "tpr_at_1pct_fpr": metrics["tpr_at_fpr"]["0.01"], "tpr_at_1pct_fpr_ci": metrics["tpr_at_fpr_ci"]["0.01"],
            "tpr_floor": a.control_tpr_floor, "passed": bool(passed), "reason": reason, **extra}


def empirical_epsilon(result: AttackResult, cfg: RunConfig, *, delta: float) -> dict:
    """Threshold chosen on one half (best TPR at ``threshold_fpr``), counted on the other → Clopper–Pearson ε."""
    a = cfg.audit
    choose, evaluate = split_for_threshold(len(result.scores), seed=cfg.seed)
    inputs = {"alpha": a.alpha, "delta": delta, "threshold_fpr": a.threshold_fpr, "split": "random halves"}
    try:
        threshold = choose_threshold(result.scores[choose], result.members[choose], fpr=a.threshold_fpr)
        tp, n_pos, fp, n_neg = rates_at_threshold(result.scores[evaluate], result.members[evaluate], threshold)
    except ValueError as exc:  # a half without members or non-members: nothing can be claimed
        return {**inputs, "eps_lower_bound": 0.0, "note": str(exc)}
    lb = eps_lower_bound(tp, n_pos, fp, n_neg, alpha=a.alpha, delta=delta)
    return {**inputs, "threshold": threshold, "tp": tp, "n_pos": n_pos, "fp": fp, "n_neg": n_neg,
            "eps_lower_bound": lb}


def comparable_unit(cfg: RunConfig, data: Prepared, privacy: dict) -> tuple[bool, str]:
    """Can the audit's unit be compared with the accountant's ε? (A user is a group of examples.)"""
    if privacy["epsilon"] is None:
        return False, "not private"
    unit = privacy["unit"]
    if cfg.audit.attack == "canary":
        k = len(data.manifest.inserted[0].user_ids) if data.manifest and data.manifest.inserted else 1
        if unit in ("user", "workspace") and k == 1:
            return True, f"canary in one {unit}'s data vs {unit}-level ε"
        return False, f"a canary spans {k} user(s) × its repeats: group privacy of the {unit}-level ε applies"
    if cfg.audit.level == "example" or unit in ("user", "workspace"):
        return True, f"{cfg.audit.level} membership vs {unit}-level ε"
    return False, f"user-level membership vs {unit}-level ε: a user is a group of examples"


def _save_scores(path: Path, curves: dict) -> None:
    """Every curve's scores and truth, so plots and claims can be redone from the run directory."""
    arrays = {}
    for i, (name, (scores, members)) in enumerate(curves.items()):
        arrays.update({f"scores_{i}": scores, f"members_{i}": members})
    with open(path, "wb") as f:
        np.savez(f, names=np.array(list(curves)), **arrays)


def _metrics(scores: np.ndarray, members: np.ndarray, cfg: RunConfig) -> dict:
    a = cfg.audit
    return attack_metrics(scores, members, fprs=FPRS, resamples=a.resamples, confidence=a.confidence,
                          seed=cfg.seed).to_dict()


def _summary(values: np.ndarray, trained: np.ndarray, *, what: str = "") -> dict:
    def stats(v):
        return {"n": int(len(v)), "mean": float(np.mean(v)) if len(v) else None,
                "max": float(np.max(v)) if len(v) else None}
    out = {"trained_hosts": stats(values[trained & ~np.isnan(values)]),
           "untrained_hosts": stats(values[~trained & ~np.isnan(values)])}
    if np.isnan(values).any():
        out["note"] = (f"{int(np.isnan(values).sum())} canaries without {what}: the fresh canaries' scores "
                       "are all equal (e.g. threat=topk), so no distribution can be fitted")
    return out


def _as_labels(y):
    import torch
    return torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _privacy_label(privacy: dict) -> str:
    if privacy["epsilon"] is None:
        return "not private"
    return f"{privacy['mechanism']}, ε = {privacy['epsilon']:.2f} ({privacy['unit']})"
