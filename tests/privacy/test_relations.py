"""Neighbouring relations: group privacy, the conversions audits compare with, and the largest AUC DP permits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from sklearn.metrics import roc_auc_score

from sandbox.privacy.relations import ADD_REMOVE, Relation, group_privacy, implied, max_auc

E = math.e


# -- group privacy ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "eps, delta, k, expected",
    [
        (1.0, 1e-5, 1, (1.0, 1e-5)),
        (1.0, 1e-5, 2, (2.0, 1e-5 * (1 + E))),
        (1.0, 1e-5, 3, (3.0, 1e-5 * (1 + E + E**2))),
        (0.5, 0.0, 4, (2.0, 0.0)),  # pure DP: k·ε
        (0.0, 1e-3, 5, (0.0, 5e-3)),  # ε = 0: Σ e^0 = k
    ],
)
def test_group_privacy_is_the_triangle_chain_hand_computed(eps, delta, k, expected):
    got = group_privacy(eps, delta, k)
    assert got[0] == pytest.approx(expected[0]) and got[1] == pytest.approx(expected[1], rel=1e-12)


@pytest.mark.parametrize(
    "args", [(1.0, 1e-5, 0), (1.0, 1e-5, 1.5), (-1.0, 0.0, 2), (1.0, -1e-5, 2), (math.nan, 0.0, 2)]
)
def test_group_privacy_rejects_bad_inputs(args):
    with pytest.raises(ValueError):
        group_privacy(*args)


# -- relations and the conversions ------------------------------------------------------------------
def test_relations_say_what_they_are():
    assert str(ADD_REMOVE["user"]) == "add/remove one user"
    assert str(Relation("replace", "user", size=2)) == "replace a group of 2 users"
    assert (
        str(Relation("inside", "example", within="user"))
        == "add/remove one example inside one user present in both worlds"
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="swap", unit="user"), "kind"),
        (dict(kind="add/remove", unit="message"), "unit"),
        (dict(kind="add/remove", unit="user", size=0), "size"),
        (dict(kind="inside", unit="example"), "within"),
        (dict(kind="add/remove", unit="example", within="user"), "within"),
        (dict(kind="inside", unit="user", within="example"), "coarser"),
    ],
)
def test_bad_relations_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Relation(**kwargs)


@pytest.mark.parametrize(
    "unit, relation, caps, steps",
    [
        ("user", ADD_REMOVE["user"], None, 1),  # the accountant's own relation
        ("example", ADD_REMOVE["example"], None, 1),
        ("user", Relation("replace", "user"), None, 2),  # replace = remove + add
        ("user", Relation("replace", "user", size=3), None, 6),
        # a canary toggled inside a host who trains either way: r examples at example level...
        ("example", Relation("inside", "example", within="user"), None, 1),
        ("example", Relation("inside", "example", size=10, within="user"), None, 10),
        # ...and a replace of the host (or its workspace) at user (workspace) level, whatever r
        ("user", Relation("inside", "example", size=10, within="user"), None, 2),
        ("workspace", Relation("inside", "example", size=10, within="user"), None, 2),
        ("workspace", ADD_REMOVE["user"], None, 2),  # a user inside a workspace present in both worlds
        ("example", ADD_REMOVE["user"], {"user": 4}, 4),  # a user of ≤ 4 examples (enforced cap)
        ("example", ADD_REMOVE["workspace"], {"user": 3, "workspace": 5}, 15),
        ("user", ADD_REMOVE["workspace"], {"workspace": 5}, 5),
    ],
)
def test_implied_steps_and_group_conversion_hand_computed(unit, relation, caps, steps):
    eps, delta = 0.7, 1e-6
    got = implied(eps, delta, unit=unit, relation=relation, caps=caps)
    expected = group_privacy(eps, delta, steps)
    assert got.finite and got.steps == steps
    assert got.epsilon == pytest.approx(expected[0]) and got.delta == pytest.approx(expected[1])
    assert got.epsilon == pytest.approx(steps * eps)
    if steps == 1:
        assert "the accountant's relation itself" in got.conversion
    else:
        assert f"k = {steps}" in got.conversion


@pytest.mark.parametrize(
    "unit, relation, caps",
    [
        ("example", ADD_REMOVE["user"], None),  # a user is a group of examples of unbounded size
        ("example", ADD_REMOVE["user"], {"workspace": 5}),  # the cap that matters is missing
        ("user", ADD_REMOVE["workspace"], None),
        ("example", ADD_REMOVE["workspace"], {"user": 3}),
    ],
)
def test_a_coarser_relation_without_its_cap_gives_no_finite_epsilon(unit, relation, caps):
    got = implied(1.0, 1e-5, unit=unit, relation=relation, caps=caps)
    assert not got.finite and math.isinf(got.epsilon) and math.isinf(got.steps)
    assert "no finite ε follows" in got.conversion


def test_implied_refuses_an_unknown_unit():
    with pytest.raises(ValueError, match="unit"):
        implied(1.0, 1e-5, unit="message", relation=ADD_REMOVE["user"])


# -- the largest AUC (ε, δ)-DP permits --------------------------------------------------------------
def _auc_by_quadrature(eps: float, delta: float) -> float:
    """∫ (1 − f(x)) dx over [0, 1] for the tightest (ε, δ) trade-off f (Dong, Roth & Su 2022)."""

    def f(x):
        return max(0.0, 1 - delta - math.exp(eps) * x, math.exp(-eps) * (1 - delta - x))

    kink = (1 - delta) / (1 + math.exp(eps))
    area, _ = integrate.quad(lambda x: 1 - f(x), 0, 1, points=[kink, 1 - delta], epsabs=1e-12, epsrel=1e-12)
    return area


@pytest.mark.parametrize(
    "eps, delta",
    [(0.0, 0.0), (0.1, 0.0), (1.0, 0.0), (1.0, 1e-5), (2.0, 0.1), (0.5, 0.3), (4.0, 1e-6), (8.0, 0.0), (0.0, 0.1)],
)
def test_max_auc_is_the_area_under_the_trade_off_curve(eps, delta):
    assert max_auc(eps, delta) == pytest.approx(_auc_by_quadrature(eps, delta), abs=1e-9)


def test_max_auc_hand_computed_values():
    assert max_auc(1.0, 0.0) == pytest.approx(0.7310585786, abs=1e-9)  # e/(1+e): pure DP gives the sigmoid
    for eps in (0.25, 1.0, 3.0):
        assert max_auc(eps, 0.0) == pytest.approx(math.exp(eps) / (1 + math.exp(eps)))
    assert max_auc(0.0, 0.0) == 0.5  # no information: chance
    # ε = 0, δ = 0.1: TPR = FPR + 0.1 up to 1, area 0.09 + 0.405 + 0.1
    assert max_auc(0.0, 0.1) == pytest.approx(0.595)
    assert max_auc(math.inf, 0.0) == 1.0 and max_auc(1.0, 1.0) == 1.0


def test_randomized_response_attains_max_auc():
    """ε-randomized response (report the bit with probability e^ε/(1+e^ε)) is the tightest ε-DP test."""
    for eps in (0.5, 1.0, 2.0):
        p = math.exp(eps) / (1 + math.exp(eps))
        y = np.array([1, 1, 0, 0])  # members and non-members, each answering 1 or 0
        s = np.array([1, 0, 1, 0])
        w = np.array([p, 1 - p, 1 - p, p])
        assert roc_auc_score(y, s, sample_weight=w) == pytest.approx(max_auc(eps, 0.0))


def test_max_auc_grows_with_epsilon_and_delta_and_refuses_bad_inputs():
    grid = [max_auc(e, 1e-5) for e in np.linspace(0, 6, 25)]
    assert all(a < b for a, b in zip(grid, grid[1:])) and 0.5 <= grid[0] and grid[-1] < 1
    assert max_auc(1.0, 1e-3) > max_auc(1.0, 1e-5) > max_auc(1.0, 0.0)
    for bad in ((-0.1, 0.0), (1.0, -1e-5), (1.0, 1.5), (math.nan, 0.0)):
        with pytest.raises(ValueError):
            max_auc(*bad)
