"""The audit of a run's own model: attack → scores → metrics with CIs → relation → control → alarm → result.

``run_audit`` is called by ``sandbox.run`` after training, on the very model the run trained.
It returns the record's ``audit`` section and writes ``roc.png`` beside the record.

* **Attacks**: ``loss`` (no shadows), ``lira`` and ``rmia`` (shadows trained by the run's own
  harness, ``sandbox.audit.shadows``), ``canary`` (planted vs fresh canaries, exposure).
* **Relation** (``audit_relation``): the neighbouring relation the audit really tests.
  Membership audits (``audit.level=user`` or ``example``) toggle whole users: all of a user's
  messages are in or out together, so both test *add/remove one user* (the example level
  reads example statistics of that user-level, group test). A canary is toggled *inside* a
  host user who trains in both worlds: *add/remove ``repeats`` examples inside one user*. The
  accountant's ε holds for add/remove one ``privacy.unit``; ``accountant_comparison`` converts
  it to the audited relation with ``sandbox.privacy.relations.implied`` (group privacy, or
  replace = two steps), or says why no finite ε follows. Only the converted (ε', δ') is
  compared with what the audit measured.
* **DP-bug alarm**: the result is ``dp_bug`` (and the run fails) when (a) the AUC's lower CI
  end exceeds ``max_auc(ε', δ')``, the largest AUC an (ε', δ')-DP mechanism permits, or (b) the
  one-run bound (Steinke et al. 2023; Bernoulli canaries only) exceeds ε'.
* **One-run bound**: the guess count is chosen over ``audit.one_run_guess_fractions`` (k IN
  and k OUT), each bound at alpha / (number of counts tried) (Bonferroni), and the largest is
  reported: a bound at confidence 1 − alpha.
* **Many-targets figure** (``eps_lower_bound``): a threshold chosen on one half of the targets,
  counted on the other, turned into a Clopper–Pearson ε. The targets of one model are not
  independent trials, so it is a heuristic, not a 95% bound; it is recorded but raises no alarm.
* **Positive control**: the same attack on the same pipeline without DP (the run itself when
  it is not private), recorded with its own audit section (``control.audit``). It passes when
  it catches members on any statistic it can measure (``control.statistics``): AUC (CI lower
  end > 0.5), TPR at 1% / 0.1% FPR (CI lower end > ``audit.control_tpr_floor``, measurable
  only with ≥ 100 / 1000 non-members), extraction (a canary's secret ranked first of its
  space). If it catches none the result is ``inconclusive``: a weak attack is not evidence of
  privacy.
* **Models trained** (``models_trained``): every model the audit trained on the data set
  (shadows, the control and its shadows) with its own privacy events, for the ledger.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sandbox.audit.attacks import lira_offline, lira_online, loss_attack, rmia
from sandbox.audit.bounds import eps_lower_bound, one_run_eps_lower_bound
from sandbox.audit.exposure import exposure_by_fit, exposure_by_rank, one_run_guesses, search_secret_space
from sandbox.audit.metrics import (
    attack_metrics,
    choose_threshold,
    plot_roc,
    rates_at_threshold,
    split_for_threshold,
    tpr_measurability,
)
from sandbox.audit.shadows import train_shadows
from sandbox.audit.targets import (
    build_population,
    example_stats,
    model_logits,
    moved_rows_stats,
    trained_user_mask,
    unit_stats,
)
from sandbox.config import ConfigError, PrivacyConfig, RunConfig
from sandbox.prepare import Prepared, Seeds
from sandbox.privacy.relations import ADD_REMOVE, Relation, implied, max_auc
from sandbox.record import write_atomic
from sandbox.train.progress import progress_bar
from sandbox.training import train_model

FPRS = (0.001, 0.01)
TPR_KEYS = {0.001: "tpr_at_0.1pct_fpr", 0.01: "tpr_at_1pct_fpr"}
TPR_LABELS = {0.001: "TPR at 0.1% FPR", 0.01: "TPR at 1% FPR"}
HEURISTIC = "heuristic: targets of one model treated as independent trials, not a 95% bound"


MIN_AUC_ALARM_TARGETS = 20  # members and non-members each, for the AUC rule of the DP-bug alarm


def enough_for_auc_alarm(n_members: int, n_nonmembers: int) -> bool:
    """Whether the AUC's bootstrap CI is worth an alarm: at least MIN_AUC_ALARM_TARGETS of each class."""
    return min(int(n_members), int(n_nonmembers)) >= MIN_AUC_ALARM_TARGETS


class ProbableDPBug(RuntimeError):
    """The audit measured more than the accountant's ε permits for the audited relation: the DP
    claim does not hold as implemented (or as accounted)."""

    def __init__(self, audit: dict):
        self.audit = audit
        v = audit.get("verdict_inputs") or {}
        c = audit.get("accountant_comparison") or {}
        fired = []
        if v.get("auc_alarm"):
            fired.append(
                f"the AUC's CI lower end {v['auc_ci_low']:.3f} exceeds {v['max_auc_permitted']:.3f}, "
                f"the largest AUC an (ε' = {c['epsilon']:.3f}, δ' = {c['delta']:.3g})-DP mechanism permits"
            )
        if v.get("one_run_alarm"):
            fired.append(
                f"the one-run bound (Steinke et al., {1 - v['alpha']:.0%} confidence) ε ≥ "
                f"{v['one_run_eps_lower_bound']:.3f} exceeds ε' = {c['epsilon']:.3f}"
            )
        eps = audit.get("accountant_epsilon")
        what = "; ".join(fired) or audit.get("reason") or "an alarm fired"
        super().__init__(
            f"PROBABLE DP BUG: the {audit.get('attack')} audit ({audit.get('relation')}): {what}. "
            f"The accountant's ε = {eps if eps is None else f'{eps:.3f}'} "
            f"({(audit.get('verdict_inputs') or {}).get('unit')}-level) gives ε' for this relation by "
            f"{c.get('conversion', '?')}; see record.json → audit"
        )


@dataclass
class AttackResult:
    scores: np.ndarray
    members: np.ndarray  # bool, the truth
    metrics: dict
    details: dict = field(default_factory=dict)
    models_trained: list = field(default_factory=list)  # shadows' privacy (see model_entry)


# -- the relation an audit tests, and the accountant's ε for it ------------------------------------
@dataclass(frozen=True)
class AuditRelation:
    """The neighbouring relation an audit tests: what the record says, and the ``Relation`` that
    ``implied`` converts the accountant's ε with, per accountant unit (``"*"``: any unit)."""

    description: str
    relations: dict
    note: str | None = None

    def for_unit(self, unit: str) -> Relation:
        return self.relations.get(unit, self.relations.get("*"))


def audit_relation(cfg: RunConfig, data: Prepared) -> AuditRelation:
    """The relation ``cfg.audit`` tests on this data (see the module docstring)."""
    a = cfg.audit
    if a.attack == "canary":
        inserted = data.manifest.inserted if data.manifest is not None else []
        k = len(inserted[0].user_ids) if inserted else 1
        r = inserted[0].repeats if inserted else 1
        if k == 1:
            rel = Relation("inside", "example", size=r, within="user")
            return AuditRelation(
                str(rel),
                {"*": rel},
                f"a canary ({r} cop{'y' if r == 1 else 'ies'} of one message) toggled inside a "
                "host user who trains either way",
            )
        # k hosts: not one Relation; per unit, the relation that covers it (each host replaced)
        return AuditRelation(
            f"add/remove a canary's {k * r} messages: {r} inside each of {k} users present in both worlds",
            {
                "example": Relation("add/remove", "example", size=k * r),
                "user": Relation("replace", "user", size=k),
                "workspace": Relation("replace", "workspace", size=k),
            },
            f"a canary planted in {k} hosts: at example level {k * r} examples; at user (workspace) level "
            f"each of the {k} hosts (their workspaces) is replaced",
        )
    rel = ADD_REMOVE["user"]
    if a.level == "example":
        return AuditRelation(
            str(rel),
            {"*": rel},
            "example-level statistics of a user-level (group) test: members are whole users, "
            "all of a user's messages in or out together",
        )
    return AuditRelation(str(rel), {"*": rel}, "members are whole users (all their messages in or out)")


def accountant_comparison(relation: AuditRelation, privacy: dict) -> dict:
    """The accountant's (ε, δ) converted to the audited relation, or why it cannot be."""
    eps = privacy.get("epsilon")
    if eps is None:
        return {"comparable": False, "reason": "not private: no accountant ε to compare with"}
    unit, delta = privacy["unit"], privacy.get("delta") or 0.0
    got = implied(eps, delta, unit=unit, relation=relation.for_unit(unit), caps=privacy.get("caps"))
    if not got.finite:
        return {"comparable": False, "reason": got.conversion}
    if got.delta >= 1:
        return {"comparable": False, "reason": f"{got.conversion}: δ' = {got.delta:.3g} ≥ 1, no guarantee left"}
    return {"relation": relation.description, "epsilon": got.epsilon, "delta": got.delta, "conversion": got.conversion}


def describe_comparison(relation: AuditRelation, comparison: dict, privacy: dict) -> str:
    if "epsilon" not in comparison:
        return comparison["reason"]
    return f"{relation.description} vs {privacy['unit']}-level ε: {comparison['conversion']}"


def model_entry(what: str, privacy: dict) -> dict:
    """One ``models_trained`` entry: what the model is and the privacy events it ran."""
    private = privacy.get("epsilon") is not None
    return {
        "what": what,
        "private": private,
        "unit": privacy.get("unit"),
        "delta": privacy.get("delta") if private else None,
        "events": list(privacy.get("events") or []) if private else [],
    }


# -- the audit --------------------------------------------------------------------------------------
def run_audit(cfg: RunConfig, data: Prepared, outcome, *, out_dir: Path, privacy: dict) -> dict:
    """Audit ``outcome.model`` as ``cfg.audit`` says; returns the record's ``audit`` section."""
    a, started = cfg.audit, time.perf_counter()
    relation = audit_relation(cfg, data)
    comparison = accountant_comparison(relation, privacy)
    comparable = "epsilon" in comparison
    # bounds are computed at the δ of the relation compared (the run's δ when there is none)
    delta = comparison["delta"] if comparable else (privacy.get("delta") or 0.0)
    # what takes long: training shadows (lira, rmia) or searching the 10⁶ secrets per canary (canary extraction)
    unit, label = ("secrets searched", "canary extraction") if a.attack == "canary" else ("shadows trained", "audit")
    long_running = a.attack in ("lira", "rmia") or (a.attack == "canary" and a.extraction)
    with progress_bar(cfg.progress and long_running, unit=unit, label=label, show_loss=False) as show:
        main = attack_model(cfg, data, outcome.model, outcome.trained_users, show=show)
        control = positive_control(cfg, data, main, show=show, delta=delta)
    models = [*main.models_trained, *control.pop("_models", [])]
    bound = empirical_epsilon(main, cfg, delta=delta)
    one_run = one_run_bound(main.details, delta=delta, alpha=a.alpha)
    curves = {f"{a.attack} ({_privacy_label(privacy)})": (main.scores, main.members)}
    if control["ran_on"] == "control run":
        curves[f"{a.attack} control ({control['pipeline']})"] = (control.pop("_scores"), control.pop("_members"))
    plot_roc(curves, out_dir / "roc.png", title=f"{a.attack}, {a.level} level, {a.threat} threat")
    write_atomic(out_dir / "audit_scores.npz", lambda p: _save_scores(p, curves))
    eps = privacy["epsilon"]
    m, shadow_timing = main.metrics, main.details.pop("timing", {})
    permitted = max_auc(comparison["epsilon"], comparison["delta"]) if comparable else None
    auc_low = m["auc_ci"][0]
    # a bootstrap CI from a handful of targets is no evidence (3 canaries against 5 fresh ones separate
    # perfectly by chance 1 time in 56, and their "CI" is then [1, 1]): the AUC rule needs enough of each
    auc_alarm = bool(comparable and enough_for_auc_alarm(m["n_members"], m["n_nonmembers"]) and auc_low > permitted)
    one_run_alarm = bool(comparable and one_run is not None and one_run > comparison["epsilon"])
    result, reason = _verdict(
        comparison,
        control,
        auc_low=auc_low,
        permitted=permitted,
        one_run=one_run,
        auc_alarm=auc_alarm,
        one_run_alarm=one_run_alarm,
    )
    section = attack_section(cfg, main)
    _warn_unmeasurable(section, "audit")
    return {
        **section,
        "bootstrap": m["bootstrap"],
        "relation": relation.description,
        "relation_note": relation.note,
        "accountant_epsilon": eps,
        "accountant_comparison": comparison,
        "comparable": comparable,
        "unit_compared": describe_comparison(relation, comparison, privacy),
        "max_auc_permitted": permitted,
        "eps_lower_bound": bound["eps_lower_bound"],
        "eps_lower_bound_kind": HEURISTIC,
        "eps_lower_bound_inputs": bound,
        "control": control,
        "result": result,
        "reason": reason,
        "one_run_eps_lower_bound": one_run,
        "verdict_inputs": {
            "control_passed": control["passed"],
            "relation": relation.description,
            "accountant_epsilon": eps,
            "delta": privacy["delta"],
            "unit": privacy["unit"],
            "converted_epsilon": comparison.get("epsilon"),
            "converted_delta": comparison.get("delta"),
            "auc": m["auc"],
            "auc_ci_low": auc_low,
            "max_auc_permitted": permitted,
            "auc_alarm": auc_alarm,
            "one_run_eps_lower_bound": one_run,
            "one_run_alarm": one_run_alarm,
            "alpha": a.alpha,
            "eps_lower_bound": bound["eps_lower_bound"],
            "eps_lower_bound_raises_alarm": False,
        },
        "models_trained": models,
        "roc_plot": "roc.png",
        "scores_file": "audit_scores.npz",
        **main.details,
        "timing": {"audit_seconds": round(time.perf_counter() - started, 2), **shadow_timing},
    }


def _verdict(
    comparison: dict,
    control: dict,
    *,
    auc_low: float,
    permitted: float | None,
    one_run: float | None,
    auc_alarm: bool,
    one_run_alarm: bool,
) -> tuple[str, str]:
    """dp_bug (an alarm fired) > inconclusive (the control caught nothing) > measured."""
    if auc_alarm or one_run_alarm:
        fired = []
        if auc_alarm:
            fired.append(
                f"AUC CI lower end {auc_low:.3f} > {permitted:.3f}, the largest AUC "
                f"(ε' = {comparison['epsilon']:.3f}, δ' = {comparison['delta']:.3g}) permits"
            )
        if one_run_alarm:
            fired.append(f"one-run ε lower bound {one_run:.3f} > ε' = {comparison['epsilon']:.3f}")
        return "dp_bug", "; ".join(fired) + f" ({comparison['conversion']})"
    if not control["passed"]:
        return "inconclusive", control["reason"]
    if "epsilon" not in comparison:
        return "measured", f"control caught members; no accountant ε for this relation: {comparison['reason']}"
    within = (
        f"AUC CI lower end {auc_low:.3f} ≤ {permitted:.3f} (the largest AUC ε' = {comparison['epsilon']:.3f} permits)"
    )
    if one_run is not None:
        within += f", one-run bound {one_run:.3f} ≤ ε'"
    return "measured", f"control caught members; {within}: consistent with the accountant"


def attack_section(cfg: RunConfig, result: AttackResult) -> dict:
    """The statistics an attack measured, under the keys every audit section uses."""
    a, m = cfg.audit, result.metrics
    out = {
        "attack": a.attack,
        "level": a.level,
        "threat": a.threat,
        "online": a.online if a.attack in ("lira", "rmia") else None,
        "auc": m["auc"],
        "auc_ci": m["auc_ci"],
    }
    for fpr in FPRS:
        out[TPR_KEYS[fpr]] = m["tpr_at_fpr"][str(fpr)]
        out[f"{TPR_KEYS[fpr]}_ci"] = m["tpr_at_fpr_ci"][str(fpr)]
    out.update(n_members=m["n_members"], n_nonmembers=m["n_nonmembers"], measurable=measurability(m["n_nonmembers"]))
    return out


def measurability(n_nonmembers: int) -> dict:
    """Per statistic: can it be measured at all with this many non-members (TPR at a FPR needs ≥ 1/FPR)?"""
    out = {"auc": {"measurable": True}}
    for fpr in FPRS:
        out[TPR_KEYS[fpr]] = tpr_measurability(n_nonmembers, fpr)
    return out


def _warn_unmeasurable(section: dict, label: str) -> None:
    for fpr in FPRS:
        info = section["measurable"][TPR_KEYS[fpr]]
        if not info["measurable"]:
            print(f"warning: {label}: {TPR_LABELS[fpr]} {info['note']}", file=sys.stderr)


def attack_model(
    cfg: RunConfig,
    data: Prepared,
    model,
    trained_users: np.ndarray,
    *,
    show=None,
    extraction: bool = True,
    what: str = "shadow",
) -> AttackResult:
    """Run ``cfg.audit.attack`` against ``model`` (trained on ``trained_users``).

    ``extraction=False`` skips the canary audit's secret-space search (``audit.extraction``
    must be on too). Shadows are listed in ``models_trained`` as ``"{what} {i}"``."""
    a = cfg.audit
    if a.attack == "canary":
        return canary_attack(cfg, data, model, trained_users, extraction=extraction and a.extraction, show=show)
    population = build_population(data, level=a.level)
    members = population.units_of_users(trained_user_mask(population, trained_users))
    initial = data.new_model(cfg, Seeds.from_seed(cfg.seed))  # the run's own initialisation (white box)
    target = unit_stats(model, population, threat=a.threat, k=a.topk, initial=initial)
    details: dict = {"population": {"units": population.n_units, "users": len(population.users)}}
    models: list = []
    if a.attack == "loss":
        scores = loss_attack(target.confidence)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x5AD0]))
        shadows = train_shadows(
            cfg,
            data,
            population,
            n_shadows=a.shadows,
            threat=a.threat,
            k=a.topk,
            workers=a.workers,
            rng=rng,
            progress=lambda i, n: show and show(i, n, None),
        )
        details.update(
            shadows={
                "n": a.shadows,
                "workers": a.workers,
                "seconds": round(shadows.seconds, 1),
                "engine": "inprocess" if cfg.mode == "federated" else "central",
            },
            timing={"shadows_seconds": round(shadows.seconds, 1)},
        )
        models = [model_entry(f"{what} {i}", p) for i, p in enumerate(shadows.privacy)]
        if a.attack == "lira":
            lira = lira_online if a.online else lira_offline
            scores = lira(target.confidence, shadows.confidence, shadows.keep)
        else:
            scores = rmia(
                target.probability,
                shadows.probability,
                shadows.keep,
                population_prob=target.probability,
                population_shadow_probs=shadows.probability,
                gamma=a.rmia_gamma,
                offline_a=None if a.online else a.rmia_offline_a,
            )
    return AttackResult(
        scores=scores, members=members, metrics=_metrics(scores, members, cfg), details=details, models_trained=models
    )


def canary_attack(
    cfg: RunConfig, data: Prepared, model, trained_users: np.ndarray, *, extraction: bool = False, show=None
) -> AttackResult:
    """Planted canaries whose host trained (members) vs fresh or left-out canaries (non-members).

    Candidates are scored with their own reaction, fresh texts with a reaction drawn the same
    way. Under ``data.canary_inclusion=bernoulli`` the candidates whose host trained also give
    the one-run bound (Steinke et al. 2023): each was planted by a fair coin, independently.
    """
    manifest = data.manifest
    if manifest is None or not manifest.planted or not manifest.fresh:
        raise ConfigError(
            "audit=canary needs a corpus with planted and fresh canaries (data=synthetic, "
            "data.n_canaries ≥ 1, data.n_fresh_canaries ≥ 1)"
        )
    class_id = {c: i for i, c in enumerate(data.classes)}
    user_index = {u: i for i, u in enumerate(data.corpus.user_ids)}
    candidates = [c for c in manifest.inserted if cfg.task.canary_label(c) in class_id]
    planted = np.array([c.planted for c in candidates])
    host_trained = np.isin([[user_index[u] for u in c.user_ids] for c in candidates], trained_users).any(axis=1)
    trained = planted & host_trained
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xCA7A]))
    fresh_labels = rng.integers(len(data.classes), size=len(manifest.fresh))  # same law as the planted ones
    candidate_tokens = cfg.task.featurize([c.text for c in candidates])
    fresh_tokens = cfg.task.featurize(list(manifest.fresh))
    labels = np.array([class_id[cfg.task.canary_label(c)] for c in candidates], dtype=np.int64)
    stat, see = _canary_statistic(cfg, data, model)
    seen = see(candidate_tokens), see(fresh_tokens)
    scores = np.concatenate([stat(seen[0], labels), stat(seen[1], fresh_labels)])
    members = np.concatenate([trained, np.zeros(len(manifest.fresh), bool)])
    # exposure: each planted canary ranked among the fresh texts scored with its own reaction
    rank, fit = np.zeros(len(candidates)), np.zeros(len(candidates))
    for i in np.flatnonzero(planted):
        reference = stat(seen[1], np.full(len(manifest.fresh), labels[i]))
        rank[i] = exposure_by_rank(scores[i : i + 1], reference)[0]
        try:
            fit[i] = exposure_by_fit(scores[i : i + 1], reference)[0]
        except ValueError:  # e.g. threat=topk: every fresh canary scores the same, nothing to fit
            fit[i] = np.nan
    details = {
        "canaries": {
            "planted": int(planted.sum()),
            "planted_in_trained_users": int(trained.sum()),
            "left_out_by_coin": int((~planted).sum()),
            "fresh": len(manifest.fresh),
            "repeats": candidates[0].repeats,
            "users_per_canary": len(candidates[0].user_ids),
            "exposure_by_rank": _summary(rank[planted], trained[planted]),
            "exposure_by_fit": _summary(fit[planted], trained[planted], what="a distribution fitted"),
            "max_exposure_possible_by_rank": float(np.log2(len(manifest.fresh) + 1)),
            **_one_run(cfg, scores[: len(candidates)], planted, host_trained),
        }
    }
    if extraction:
        tried = np.flatnonzero(trained)
        details["extraction"] = search_secret_space(
            stat,
            see,
            [candidates[i].text for i in tried],
            labels[tried],
            template=manifest.template,
            secret_format=_secret_format(manifest),
            featurize=cfg.task.featurize,
            progress=lambda done, total: show and show(done, total, None),
        )
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
    """Steinke et al.'s one-run guesses on the candidates whose host trained (their coins are fair).

    For each share f of ``audit.one_run_guess_fractions`` the audit guesses IN for the k =
    ⌊f·m/2⌋ highest-scoring candidates and OUT for the k lowest. The bounds (at the compared
    relation's δ) are filled in by :func:`one_run_bound`, each at alpha / (number of distinct k).
    """
    if planted.all():
        return {
            "one_run_eps_lower_bound": None,
            "one_run_note": "not computed: needs data.canary_inclusion=bernoulli (each canary planted "
            "independently with probability 1/2); this corpus plants all of them",
        }
    m = int(host_trained.sum())
    if m < 2:
        return {"one_run_eps_lower_bound": None, "one_run_note": f"not computed: {m} candidate(s) with a trained host"}
    s, included = scores[host_trained], planted[host_trained]
    by_k: dict[int, list[float]] = {}
    for f in cfg.audit.one_run_guess_fractions:
        by_k.setdefault(max(1, int(f * m // 2)), []).append(float(f))
    tried = []
    for k, fractions in sorted(by_k.items()):
        r, v = one_run_guesses(s, included, n_guess_in=k, n_guess_out=k)
        tried.append({"fractions": fractions, "guess_in": k, "guess_out": k, "guesses": r, "correct": v})
    return {
        "one_run": {
            "m": m,
            "tried": tried,
            "alpha": cfg.audit.alpha,
            "correction": f"Bonferroni: each of the {len(tried)} guess counts at alpha / {len(tried)}",
        },
        "one_run_eps_lower_bound": None,
    }  # filled in by run_audit, at the compared δ


def one_run_bound(details: dict, *, delta: float, alpha: float) -> float | None:
    """The one-run ε lower bound of a canary audit at δ, or None when it does not apply.

    The largest over the guess counts tried, each at alpha / (counts tried): by a union bound the
    maximum holds with confidence 1 − alpha. The chosen count's guesses are recorded beside it.
    """
    one = details.get("canaries", {}).get("one_run")
    if one is None:
        return None
    each = alpha / len(one["tried"])
    for t in one["tried"]:
        t["eps_lower_bound"] = one_run_eps_lower_bound(one["m"], t["guesses"], t["correct"], delta=delta, alpha=each)
    best = max(one["tried"], key=lambda t: t["eps_lower_bound"])  # first (fewest guesses) among ties
    one.update(
        delta=delta,
        alpha_each=each,
        guess_in=best["guess_in"],
        guess_out=best["guess_out"],
        guesses=best["guesses"],
        correct=best["correct"],
        chosen_fractions=best["fractions"],
    )
    details["canaries"]["one_run_eps_lower_bound"] = best["eps_lower_bound"]
    return best["eps_lower_bound"]


def control_config(cfg: RunConfig) -> tuple[RunConfig, str, bool]:
    """(the control's config, its pipeline's name, whether it must be trained apart from the run).

    ``audit.control_on=central`` (federated runs): a *central* non-private model of the same data.
    Federated averaging without DP can be out of the attack's reach (each user is one of hundreds
    per round, a few rounds in all), so its own control fails whatever the DP run does; the
    central model shows that the attack finds members of this data where a model holds them.
    """
    central = cfg.audit.control_on == "central" and cfg.mode != "central"
    pipeline = "central, no DP" if central or cfg.mode == "central" else f"{cfg.mode}, no DP"
    unit = "example" if central or cfg.mode == "central" else cfg.federation.unit
    control_cfg = dataclasses.replace(
        cfg, progress=False, mode="central" if central else cfg.mode, privacy=PrivacyConfig(mechanism="none", unit=unit)
    )
    return control_cfg, pipeline, central or cfg.privacy.mechanism != "none"


def positive_control(cfg: RunConfig, data: Prepared, main: AttackResult, *, show=None, delta: float = 0.0) -> dict:
    """The same attack on the same pipeline without DP, with its own audit section; passes when
    it catches members on any statistic it can measure (``control.statistics``).

    The returned dict carries ``_models`` (models it trained) and, for a control run, ``_scores``
    and ``_members``, which :func:`run_audit` takes out.
    """
    a = cfg.audit
    control_cfg, pipeline, retrain = control_config(cfg)
    if not retrain:
        result, ran_on, extra = main, "this run (not private)", {}
    elif not a.control:
        return {
            "ran_on": "none",
            "pipeline": pipeline,
            "passed": False,
            "statistics": {},
            "reason": "positive control disabled (audit.control=false)",
        }
    else:
        outcome = train_model(control_cfg, data, Seeds.from_seed(cfg.seed))
        result = attack_model(
            control_cfg,
            data,
            outcome.model,
            outcome.trained_users,
            show=show,
            extraction=a.extraction,
            what="positive control shadow",
        )
        one_run_bound(result.details, delta=delta, alpha=a.alpha)
        ran_on = "control run"
        extra = {
            "_scores": result.scores,
            "_members": result.members,
            "_models": [model_entry("positive control", outcome.privacy), *result.models_trained],
        }
    section = {
        **attack_section(control_cfg, result),
        **{k: v for k, v in result.details.items() if k != "timing"},
        "result": "measured",
    }
    if retrain:
        _warn_unmeasurable(section, "audit control")
    statistics = control_statistics(section, floor=a.control_tpr_floor)
    passed, reason = control_verdict(statistics)
    return {
        "ran_on": ran_on,
        "pipeline": pipeline,
        "privacy": "none",
        "tpr_floor": a.control_tpr_floor,
        "passed": passed,
        "reason": reason,
        "statistics": statistics,
        "audit": section,
        **extra,
    }


def control_statistics(section: dict, *, floor: float) -> dict:
    """Per statistic of a control's audit section: measurable, value, CI, and whether it caught members."""
    n = section["n_nonmembers"]
    lo, hi = section["auc_ci"]
    out = {
        "auc": {
            "measurable": True,
            "value": section["auc"],
            "ci": [lo, hi],
            "caught": bool(lo > 0.5),
            "rule": "AUC CI lower end > 0.5",
        }
    }
    for fpr in FPRS:
        key = TPR_KEYS[fpr]
        info = tpr_measurability(n, fpr)
        ci = section[f"{key}_ci"]
        entry = {
            "measurable": info["measurable"],
            "value": section[key],
            "ci": ci,
            "rule": f"CI lower end > {floor:g} (audit.control_tpr_floor), with ≥ {info['needs_nonmembers']} "
            "non-members",
        }
        entry["caught"] = bool(ci[0] > floor) if info["measurable"] else None
        if not info["measurable"]:
            entry["note"] = info["note"]
        out[key] = entry
    if "extraction" in section:
        x = section["extraction"]
        tried = x["n_canaries"]
        out["extraction"] = {
            "measurable": tried >= 1,
            "value": x["n_extracted"],
            "of": tried,
            "caught": bool(x["n_extracted"] >= 1) if tried >= 1 else None,
            "rule": "at least one canary's secret ranks first of its whole space",
        }
        if not tried:
            out["extraction"]["note"] = "not measurable: no planted canary's host trained"
    if "canaries" in section:
        trained = section["canaries"]["exposure_by_rank"]["trained_hosts"]
        out["exposure_by_rank"] = {
            "measurable": trained["n"] >= 1,
            "value": trained["mean"],
            "of": trained["n"],
            "caught": None,
            "note": "no CI is recorded for exposure: not used for the control's pass; a claim row judges it "
            "on control.audit.canaries against its own bound",
        }
    return out


def control_verdict(statistics: dict) -> tuple[bool, str]:
    """Passed when any measurable statistic caught members; the reason lists each statistic."""

    def say(name: str, s: dict) -> str:
        if not s["measurable"]:
            return f"{name}: {s.get('note', 'not measurable')}"
        if "ci" in s:
            return f"{name} {s['value']:.3f} (CI from {s['ci'][0]:.3f}; {s['rule']})"
        return f"{name} {s['value']} of {s.get('of')} ({s['rule']})"

    names = {
        "auc": "AUC",
        **{TPR_KEYS[f]: TPR_LABELS[f] for f in FPRS},
        "extraction": "extraction",
        "attribute_gap": "attribute gap",
    }
    judged = {k: s for k, s in statistics.items() if k in names}
    caught = [say(names[k], s) for k, s in judged.items() if s.get("caught") is True]
    if caught:
        return True, "control caught members on: " + "; ".join(caught)
    missed = [say(names[k], s) for k, s in judged.items()]
    return False, (
        "positive control failed: without DP the attack catches no members on any measurable "
        "statistic (" + "; ".join(missed) + "); the attack is too weak for this audit to support any claim"
    )


def empirical_epsilon(result: AttackResult, cfg: RunConfig, *, delta: float) -> dict:
    """Threshold chosen on one half (best TPR at ``threshold_fpr``), counted on the other → Clopper–Pearson ε.

    A heuristic (``HEURISTIC``): Clopper–Pearson treats the targets as independent trials, but
    they are all scored on one model, so the figure is not a 95% bound and raises no alarm.
    """
    a = cfg.audit
    choose, evaluate = split_for_threshold(len(result.scores), seed=cfg.seed)
    inputs = {
        "kind": HEURISTIC,
        "alpha": a.alpha,
        "delta": delta,
        "threshold_fpr": a.threshold_fpr,
        "split": "random halves",
    }
    try:
        threshold = choose_threshold(result.scores[choose], result.members[choose], fpr=a.threshold_fpr)
        tp, n_pos, fp, n_neg = rates_at_threshold(result.scores[evaluate], result.members[evaluate], threshold)
    except ValueError as exc:  # a half without members or non-members: nothing can be claimed
        return {**inputs, "eps_lower_bound": 0.0, "note": str(exc)}
    lb = eps_lower_bound(tp, n_pos, fp, n_neg, alpha=a.alpha, delta=delta)
    return {**inputs, "threshold": threshold, "tp": tp, "n_pos": n_pos, "fp": fp, "n_neg": n_neg, "eps_lower_bound": lb}


def _save_scores(path: Path, curves: dict) -> None:
    """Every curve's scores and truth, so plots and claims can be redone from the run directory."""
    arrays = {}
    for i, (_name, (scores, members)) in enumerate(curves.items()):
        arrays.update({f"scores_{i}": scores, f"members_{i}": members})
    with open(path, "wb") as f:
        np.savez(f, names=np.array(list(curves)), **arrays)


def _metrics(scores: np.ndarray, members: np.ndarray, cfg: RunConfig) -> dict:
    a = cfg.audit
    return attack_metrics(
        scores, members, fprs=FPRS, resamples=a.resamples, confidence=a.confidence, seed=cfg.seed
    ).to_dict()


def _summary(values: np.ndarray, trained: np.ndarray, *, what: str = "") -> dict:
    def stats(v):
        return {
            "n": int(len(v)),
            "mean": float(np.mean(v)) if len(v) else None,
            "max": float(np.max(v)) if len(v) else None,
        }

    out = {
        "trained_hosts": stats(values[trained & ~np.isnan(values)]),
        "untrained_hosts": stats(values[~trained & ~np.isnan(values)]),
    }
    if np.isnan(values).any():
        out["note"] = (
            f"{int(np.isnan(values).sum())} canaries without {what}: the fresh canaries' scores "
            "are all equal (e.g. threat=topk), so no distribution can be fitted"
        )
    return out


def _as_labels(y):
    import torch

    return torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _privacy_label(privacy: dict) -> str:
    if privacy["epsilon"] is None:
        return "not private"
    return f"{privacy['mechanism']}, ε = {privacy['epsilon']:.2f} ({privacy['unit']})"
