"""Audits that fit recommenders: the attacker sees only the ranked list a user is shown.

* **Membership, user level.** For each user, the attacker knows some of the user's items (here:
  their history) and sees the top-k list the model shows them; the score is the share of
  those items in the list (hits / min(k, |items|)). A model that memorised its training users
  puts their own items in their lists more often than a held-out user's. Members: training
  users; non-members: held-out users (same distribution: a random split). AUC and TPR at low
  FPR with stratified bootstrap CIs (``metrics.attack_metrics``).
* **Attribute inference** (jobs: "secretly looking for a job", which only the member's private
  messages reveal). The attacker knows the attribute of some users (the held-out users, e.g.
  from a survey), learns it from their lists (a logistic regression on which items were shown,
  scikit-learn), chooses the threshold by cross-validation on them, and predicts it for every
  training member from their list alone. Reported: AUC, and the advantage TPR − FPR at that
  threshold (0 = no better than the base rate, whatever the base rate), each with a bootstrap
  CI over the targets, next to the base rate.

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


def attribute_inference(lists_ref: np.ndarray, attr_ref: np.ndarray, lists_target: np.ndarray,
                        attr_target: np.ndarray, *, n_items: int, resamples: int, confidence: float,
                        seed: int) -> dict:
    """Learn the attribute from reference users' lists, then infer it for the targets from theirs."""
    attr_ref, attr_target = np.asarray(attr_ref, bool), np.asarray(attr_target, bool)
    base = float(attr_target.mean())
    out = {"base_rate": base, "n_reference": int(len(attr_ref)), "n_targets": int(len(attr_target)),
           "model": "sklearn LogisticRegression on the items shown; threshold by 5-fold CV on the reference"}
    if min(attr_ref.sum(), (~attr_ref).sum()) < 5 or min(attr_target.sum(), (~attr_target).sum()) < 1:
        return {**out, "result": "too_few", "reason": "fewer than 5 reference users (or no target) in a class"}
    x_ref, x_target = shown_matrix(lists_ref, n_items), shown_matrix(lists_target, n_items)
    clf = LogisticRegression(max_iter=2000)
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    ref_scores = cross_val_predict(clf, x_ref, attr_ref, cv=cv, method="predict_proba")[:, 1]
    threshold = youden_threshold(ref_scores, attr_ref)
    scores = clf.fit(x_ref, attr_ref).predict_proba(x_target)[:, 1]
    adv = advantage(scores, attr_target, threshold)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(attr_target), np.flatnonzero(~attr_target)
    boot_adv, boot_auc = [], []
    for _ in range(resamples):  # stratified: the base rate stays fixed
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        boot_adv.append(advantage(scores[idx], attr_target[idx], threshold))
        boot_auc.append(roc_auc_score(attr_target[idx], scores[idx]))
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    return {**out, "result": "measured", "auc": float(roc_auc_score(attr_target, scores)),
            "auc_ci": [float(v) for v in np.quantile(boot_auc, q)],
            "advantage": adv, "advantage_ci": [float(v) for v in np.quantile(boot_adv, q)],
            "threshold": threshold,
            "bootstrap": {"resamples": int(resamples), "confidence": float(confidence)}}


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
        out["attribute"] = {"name": rec.sensitive_name, **attribute_inference(
            lists[~is_member], rec.sensitive[others], lists[is_member], rec.sensitive[members],
            n_items=rec.n_items, resamples=resamples, confidence=confidence, seed=seed)}
    return out
