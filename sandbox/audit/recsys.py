"""Audits that fit recommenders: the attacker sees only the ranked list a user is shown.

* **Membership, user level.** For each user, the attacker knows some of the user's items (here:
  their history) and sees the top-k list the model shows them; the score is the share of
  those items in the list (hits / min(k, |items|)). A model that memorised its training users
  puts their own items in their lists more often than a held-out user's. Members: training
  users; non-members: held-out users (same distribution: a random split). AUC and TPR at low
  FPR with stratified bootstrap CIs (``metrics.attack_metrics``).
* **Attribute inference** (jobs: "secretly looking for a job", which only the member's private
  messages reveal). The attacker knows the attribute of some users (half the held-out users,
  e.g. from a survey), learns it from their lists (a logistic regression on which items were
  shown, scikit-learn), chooses the threshold by cross-validation on them, and predicts it
  from the list alone for every training member and for the other held-out users. Reported
  per group: AUC, and the advantage TPR − FPR at that threshold (0 = no better than the base
  rate, whatever the base rate), each with a stratified bootstrap CI; and the **gap**
  members − non-members (Yeom et al. 2018): what *training on* a member adds. A user tower
  that reads the messages reveals their content to anyone shown the list, member or not; DP
  bounds only the gap.

A ``top-k`` list here does not hide items the user already has (a "for you" page may repeat
them); for channels it is limited to the user's workspace.

:func:`run_suggestions_audit` (what ``sandbox.run`` calls) adds the relation tested (add/remove
one user) and the accountant's ε for it, a positive control on a non-private model of the same
pipeline (``audit.control``), the DP-bug alarm on the membership AUC, and ``models_trained``.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from sandbox.audit.harness import (
    FPRS,
    TPR_KEYS,
    AuditRelation,
    accountant_comparison,
    control_config,
    control_verdict,
    describe_comparison,
    enough_for_auc_alarm,
    measurability,
    model_entry,
)
from sandbox.audit.metrics import attack_metrics, tpr_measurability
from sandbox.prepare import Seeds
from sandbox.privacy.relations import ADD_REMOVE, max_auc
from sandbox.tasks.recommend import RecData, shown_lists
from sandbox.training import train_model


def list_hit_scores(lists: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Share of each user's known items that appear in their list: hits / min(k, |items|) (0 if none known)."""
    known = items.sum(1)
    hits = np.take_along_axis(items, np.maximum(lists, 0), 1) & (lists >= 0)
    return hits.sum(1) / np.maximum(np.minimum(lists.shape[1], known), 1)


def shown_matrix(lists: np.ndarray, n_items: int) -> np.ndarray:
    """[users, n_items] 0/1: which items each user was shown (the attacker's features)."""
    out = np.zeros((len(lists), n_items), dtype=np.float32)
    rows = np.repeat(np.arange(len(lists)), lists.shape[1])
    flat = lists.reshape(-1)
    keep = flat >= 0
    out[rows[keep], flat[keep]] = 1.0
    return out


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """A threshold maximising TPR − FPR on (scores, labels): midway between the best ROC cut
    (sklearn's ``roc_curve``) and the next lower score, so it classifies these scores the same."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    cut = float(thresholds[best])
    below = np.asarray(scores)[np.asarray(scores) < cut]
    if np.isfinite(cut) and len(below):  # midway to the next score below: a margin for new users' scores
        return (cut + float(below.max())) / 2
    return cut


def advantage(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """TPR − FPR of "attribute if score ≥ threshold" (Yeom et al.'s advantage)."""
    labels = np.asarray(labels)
    if labels.dtype != bool:
        raise ValueError(f"labels must be boolean, got dtype {labels.dtype}")
    predicted = np.asarray(scores) >= threshold
    return float(predicted[labels].mean() - predicted[~labels].mean())


def _bootstrap_advantage(scores, labels, threshold, rng, resamples):
    """Stratified bootstrap of (advantage, AUC) over (scores, labels): the base rate stays fixed."""
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    adv, auc = np.empty(resamples), np.empty(resamples)
    for b in range(resamples):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        adv[b] = advantage(scores[idx], labels[idx], threshold)
        auc[b] = roc_auc_score(labels[idx], scores[idx])
    return adv, auc


def attribute_inference(
    lists_ref: np.ndarray,
    attr_ref: np.ndarray,
    targets: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_items: int,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """Learn the attribute from reference users' lists, then infer it for each target group from theirs.

    ``targets`` maps a group name ("members", "non_members") to (lists, attribute). With both
    groups, ``gap`` is the members' advantage minus the non-members' (Yeom et al. 2018's view:
    what training adds to what the model reveals about anyone who uses it), with a bootstrap CI.
    """
    attr_ref = np.asarray(attr_ref, bool)
    out = {
        "n_reference": int(len(attr_ref)),
        "base_rate": float(attr_ref.mean()),
        "model": "sklearn LogisticRegression on the items shown; threshold by 5-fold CV on the reference",
    }
    groups = {name: (lists, np.asarray(attr, bool)) for name, (lists, attr) in targets.items()}
    if min(attr_ref.sum(), (~attr_ref).sum()) < 5 or any(min(a.sum(), (~a).sum()) < 1 for _, a in groups.values()):
        return {
            **out,
            "result": "too_few",
            "reason": "fewer than 5 reference users in a class, or a target group without both classes",
        }
    x_ref = shown_matrix(lists_ref, n_items)
    clf = LogisticRegression(max_iter=2000)
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    ref_scores = cross_val_predict(clf, x_ref, attr_ref, cv=cv, method="predict_proba")[:, 1]
    threshold = youden_threshold(ref_scores, attr_ref)
    clf.fit(x_ref, attr_ref)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    boots = {}
    for i, (name, (lists, attr)) in enumerate(groups.items()):
        scores = clf.predict_proba(shown_matrix(lists, n_items))[:, 1]
        adv_b, auc_b = _bootstrap_advantage(scores, attr, threshold, np.random.default_rng([seed, i]), resamples)
        boots[name] = adv_b
        out[name] = {
            "n": int(len(attr)),
            "base_rate": float(attr.mean()),
            "advantage": advantage(scores, attr, threshold),
            "advantage_ci": [float(v) for v in np.quantile(adv_b, q)],
            "auc": float(roc_auc_score(attr, scores)),
            "auc_ci": [float(v) for v in np.quantile(auc_b, q)],
        }
    if {"members", "non_members"} <= set(out):
        gap = boots["members"] - boots["non_members"]  # independent resamples of the two groups
        out["gap"] = out["members"]["advantage"] - out["non_members"]["advantage"]
        out["gap_ci"] = [float(v) for v in np.quantile(gap, q)]
    return {
        **out,
        "result": "measured",
        "threshold": threshold,
        "bootstrap": {"resamples": int(resamples), "confidence": float(confidence), "stratified": True},
    }


def suggestions_audit(model, rec: RecData, *, k: int, resamples: int, confidence: float, seed: int) -> dict:
    """Membership (user level) and attribute inference from the top-k lists the trained model shows."""
    members, others = rec.split.train_users, rec.split.test_users
    users = np.concatenate([members, others])
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(others), bool)]
    lists = shown_lists(model, rec, users, k=k)
    scores = list_hit_scores(lists, rec.matrix(users, held_out=False))
    membership = attack_metrics(
        scores, is_member, fprs=(0.001, 0.01), resamples=resamples, confidence=confidence, seed=seed
    ).to_dict()
    out = {
        "attack": "suggestions",
        "level": "user",
        "threat": f"top-{k} list shown to the user",
        "result": "measured",
        "membership": {**membership, "score": "share of the user's history items in their list"},
    }
    if rec.sensitive is None:
        out["attribute"] = {"result": "not_applicable", "reason": f"task {rec.corpus.name} has no sensitive attribute"}
    else:
        # the attacker knows the attribute of half the held-out users (reference); the other half
        # are non-member targets, so that what training adds shows as members minus non-members
        order = np.random.default_rng([seed, 0xA77]).permutation(len(others))
        ref, held = np.sort(order[: len(others) // 2]), np.sort(order[len(others) // 2 :])
        other_lists = lists[~is_member]
        out["attribute"] = {
            "name": rec.sensitive_name,
            **attribute_inference(
                other_lists[ref],
                rec.sensitive[others[ref]],
                {
                    "members": (lists[is_member], rec.sensitive[members]),
                    "non_members": (other_lists[held], rec.sensitive[others[held]]),
                },
                n_items=rec.n_items,
                resamples=resamples,
                confidence=confidence,
                seed=seed,
            ),
        }
    return out


def run_suggestions_audit(cfg, data, outcome, *, privacy: dict) -> dict:
    """``audit=suggestions`` on the run's model, with the relation it tests, a positive control and the
    DP-bug alarm (the record's ``audit`` section; called by ``sandbox.run``).

    * Relation: members are whole training users, non-members held-out users: *add/remove one user*,
      compared with the accountant's ε converted to it (``harness.accountant_comparison``).
    * Positive control: the same audit on a non-private model of the same pipeline (the run itself
      when it is not private; ``audit.control_on=central`` as for the harness). It passes when it
      catches members on any statistic it can measure: membership AUC (CI lower end > 0.5), TPR at
      1% / 0.1% FPR (CI lower end > ``audit.control_tpr_floor``, with ≥ 100 / 1000 non-members), or
      the attribute gap (CI lower end > 0: training on members reveals more of their attribute).
    * Result: ``dp_bug`` when the membership AUC's CI lower end exceeds ``max_auc(ε', δ')``, else
      ``measured``; ``reason`` says whether the control caught members, and a claim judges each of its
      rows on the control's statistic (``control.statistics``).
    """

    a = cfg.audit
    kwargs = dict(k=cfg.task.top_k, resamples=a.resamples, confidence=a.confidence, seed=cfg.seed)
    main = suggestions_audit(outcome.model, data.extra, **kwargs)
    rel = ADD_REMOVE["user"]
    relation = AuditRelation(str(rel), {"*": rel}, "members are whole training users, non-members held-out users")
    comparison = accountant_comparison(relation, privacy)
    comparable = "epsilon" in comparison
    control_cfg, pipeline, retrain = control_config(cfg)
    models: list = []
    if not retrain:
        control_audit, ran_on = main, "this run (not private)"
    elif not a.control:
        control_audit, ran_on = None, "none"
    else:
        control_outcome = train_model(control_cfg, data, Seeds.from_seed(cfg.seed))
        control_audit, ran_on = suggestions_audit(control_outcome.model, data.extra, **kwargs), "control run"
        models.append(model_entry("positive control", control_outcome.privacy))
    mem = main["membership"]
    mem["measurable"] = measurability(mem["n_nonmembers"])
    for fpr, info in mem["measurable"].items():
        if fpr != "auc" and not info["measurable"]:
            print(f"warning: audit: membership {fpr.replace('_', ' ')} {info['note']}", file=sys.stderr)
    if control_audit is None:
        control = {
            "ran_on": "none",
            "pipeline": pipeline,
            "passed": False,
            "statistics": {},
            "reason": "positive control disabled (audit.control=false)",
        }
    else:
        statistics = suggestions_control_statistics(control_audit, floor=a.control_tpr_floor)
        passed, reason = control_verdict(statistics)
        section = {
            "attack": "suggestions",
            "level": control_audit["level"],
            "threat": control_audit["threat"],
            "membership": {
                **control_audit["membership"],
                "measurable": measurability(control_audit["membership"]["n_nonmembers"]),
            },
            "attribute": control_audit["attribute"],
            "result": "measured",
        }
        control = {
            "ran_on": ran_on,
            "pipeline": pipeline,
            "privacy": "none",
            "tpr_floor": a.control_tpr_floor,
            "passed": passed,
            "reason": reason,
            "statistics": statistics,
            "audit": section,
        }
    permitted = max_auc(comparison["epsilon"], comparison["delta"]) if comparable else None
    auc_low = mem["auc_ci"][0]
    auc_alarm = bool(comparable and enough_for_auc_alarm(mem["n_members"], mem["n_nonmembers"]) and auc_low > permitted)
    if auc_alarm:
        result, reason = (
            "dp_bug",
            (
                f"membership AUC CI lower end {auc_low:.3f} > {permitted:.3f}, the largest AUC "
                f"(ε' = {comparison['epsilon']:.3f}, δ' = {comparison['delta']:.3g}) permits "
                f"({comparison['conversion']})"
            ),
        )
    else:  # measured either way: a claim judges each row on the control's statistic (control.statistics)
        caught = (
            "control caught members"
            if control["passed"]
            else "the positive control caught no members (control.reason): a low figure here is no evidence of privacy"
        )
        if comparable:
            reason = (
                f"{caught}; membership AUC CI lower end {auc_low:.3f} ≤ {permitted:.3f} (the largest AUC "
                f"ε' = {comparison['epsilon']:.3f} permits): consistent with the accountant"
            )
        else:
            reason = f"{caught}; no accountant ε for this relation: {comparison['reason']}"
        result = "measured"
    return {
        **main,
        "result": result,
        "reason": reason,
        "relation": relation.description,
        "relation_note": relation.note,
        "accountant_epsilon": privacy["epsilon"],
        "accountant_comparison": comparison,
        "comparable": comparable,
        "unit_compared": describe_comparison(relation, comparison, privacy),
        "max_auc_permitted": permitted,
        "control": control,
        "verdict_inputs": {
            "control_passed": control["passed"],
            "relation": relation.description,
            "accountant_epsilon": privacy["epsilon"],
            "delta": privacy["delta"],
            "unit": privacy["unit"],
            "converted_epsilon": comparison.get("epsilon"),
            "converted_delta": comparison.get("delta"),
            "auc": mem["auc"],
            "auc_ci_low": auc_low,
            "max_auc_permitted": permitted,
            "auc_alarm": auc_alarm,
            "one_run_eps_lower_bound": None,
            "one_run_alarm": False,
            "alpha": a.alpha,
        },
        "models_trained": models,
    }


def suggestions_control_statistics(audit: dict, *, floor: float) -> dict:
    """Per statistic of a suggestions audit run as a control: measurable, value, CI, caught members."""

    mem = audit["membership"]
    lo, hi = mem["auc_ci"]
    out = {
        "auc": {
            "measurable": True,
            "value": mem["auc"],
            "ci": [lo, hi],
            "caught": bool(lo > 0.5),
            "rule": "membership AUC CI lower end > 0.5",
        }
    }
    for fpr in FPRS:
        info = tpr_measurability(mem["n_nonmembers"], fpr)
        ci = mem["tpr_at_fpr_ci"][str(fpr)]
        entry = {
            "measurable": info["measurable"],
            "value": mem["tpr_at_fpr"][str(fpr)],
            "ci": ci,
            "rule": f"CI lower end > {floor:g} (audit.control_tpr_floor), with ≥ {info['needs_nonmembers']} "
            "non-members",
            "caught": bool(ci[0] > floor) if info["measurable"] else None,
        }
        if not info["measurable"]:
            entry["note"] = info["note"]
        out[TPR_KEYS[fpr]] = entry
    attr = audit["attribute"]
    if attr.get("result") == "measured" and "gap" in attr:
        out["attribute_gap"] = {
            "measurable": True,
            "value": attr["gap"],
            "ci": attr["gap_ci"],
            "caught": bool(attr["gap_ci"][0] > 0),
            "rule": "attribute advantage gap members − non-members: CI lower end > 0",
        }
    else:
        out["attribute_gap"] = {
            "measurable": False,
            "caught": None,
            "note": f"not measurable: {attr.get('reason', attr.get('result'))}",
        }
    return out
