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
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from sandbox.audit.metrics import attack_metrics
from sandbox.tasks.recommend import RecData, shown_lists


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


def attribute_inference(lists_ref: np.ndarray, attr_ref: np.ndarray, targets: dict[str, tuple[np.ndarray, np.ndarray]],
                        *, n_items: int, resamples: int, confidence: float, seed: int) -> dict:
    """Learn the attribute from reference users' lists, then infer it for each target group from theirs.

    ``targets`` maps a group name ("members", "non_members") to (lists, attribute). With both
    groups, ``gap`` is the members' advantage minus the non-members' (Yeom et al. 2018's view:
    what training adds to what the model reveals about anyone who uses it), with a bootstrap CI.
    """
    attr_ref = np.asarray(attr_ref, bool)
    out = {"n_reference": int(len(attr_ref)), "base_rate": float(attr_ref.mean()),
           "model": "sklearn LogisticRegression on the items shown; threshold by 5-fold CV on the reference"}
    groups = {name: (lists, np.asarray(attr, bool)) for name, (lists, attr) in targets.items()}
    if min(attr_ref.sum(), (~attr_ref).sum()) < 5 or any(min(a.sum(), (~a).sum()) < 1 for _, a in groups.values()):
        return {**out, "result": "too_few", "reason": "fewer than 5 reference users in a class, or a target "
                                                        "group without both classes"}
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
        out[name] = {"n": int(len(attr)), "base_rate": float(attr.mean()),
                     "advantage": advantage(scores, attr, threshold),
                     "advantage_ci": [float(v) for v in np.quantile(adv_b, q)],
                     "auc": float(roc_auc_score(attr, scores)), "auc_ci": [float(v) for v in np.quantile(auc_b, q)]}
    if {"members", "non_members"} <= set(out):
        gap = boots["members"] - boots["non_members"]  # independent resamples of the two groups
        out["gap"] = out["members"]["advantage"] - out["non_members"]["advantage"]
        out["gap_ci"] = [float(v) for v in np.quantile(gap, q)]
    return {**out, "result": "measured", "threshold": threshold,
            "bootstrap": {"resamples": int(resamples), "confidence": float(confidence), "stratified": True}}


def suggestions_audit(model, rec: RecData, *, k: int, resamples: int, confidence: float, seed: int) -> dict:
    """Membership (user level) and attribute inference from the top-k lists the trained model shows."""
    members, others = rec.split.train_users, rec.split.test_users
    users = np.concatenate([members, others])
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(others), bool)]
    lists = shown_lists(model, rec, users, k=k)
    scores = list_hit_scores(lists, rec.matrix(users, held_out=False))
    membership = attack_metrics(scores, is_member, fprs=(0.001, 0.01), resamples=resamples,
                                confidence=confidence, seed=seed).to_dict()
    out = {"attack": "suggestions", "level": "user", "threat": f"top-{k} list shown to the user",
           "result": "measured",
           "membership": {**membership, "score": "share of the user's history items in their list"}}
    if rec.sensitive is None:
        out["attribute"] = {"result": "not_applicable", "reason": f"task {rec.corpus.name} has no sensitive attribute"}
    else:
        # the attacker knows the attribute of half the held-out users (reference); the other half
        # are non-member targets, so that what training adds shows as members minus non-members
        order = np.random.default_rng([seed, 0xA77]).permutation(len(others))
        ref, held = np.sort(order[: len(others) // 2]), np.sort(order[len(others) // 2:])
        other_lists = lists[~is_member]
        out["attribute"] = {"name": rec.sensitive_name, **attribute_inference(
            other_lists[ref], rec.sensitive[others[ref]],
            {"members": (lists[is_member], rec.sensitive[members]),
             "non_members": (other_lists[held], rec.sensitive[others[held]])},
            n_items=rec.n_items, resamples=resamples, confidence=confidence, seed=seed)}
    return out
