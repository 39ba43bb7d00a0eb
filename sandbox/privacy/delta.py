"""Choosing and checking δ against the size of the population being protected.

n counts accounting units (examples, users or workspaces), the same unit the
neighbouring relation adds or removes.
"""

from __future__ import annotations

from sandbox.privacy.events import (
    UNITS,
    PrivacyInputError,
    check_choice,
    check_count,
    validate_privacy_inputs,
)


def default_delta(n: int) -> float:
    """The largest power of ten <= 1 / (10 n), for a population of ``n`` units.

    δ bounds the probability that the guarantee fails outright, so it must sit well
    below 1/n (see ``check_delta``); 1/(10 n) keeps at least a tenfold margin and
    rounding down to a power of ten keeps it readable: n = 60 000 gives 1e-6.
    """
    check_count("n", n)
    # 10^-k <= 1/(10 n)  <=>  10^k >= 10 n; the smallest such k is the digit count of 10 n - 1.
    return float(f"1e-{len(str(10 * int(n) - 1))}")


def check_delta(*, delta: float, n: int, unit: str) -> None:
    """Refuse δ >= 1/n for a population of ``n`` units of kind ``unit``."""
    validate_privacy_inputs(delta=delta)
    check_count("n", n)
    check_choice("unit", unit, UNITS)
    if delta * n >= 1:
        raise PrivacyInputError(
            f"delta={delta:g} is >= 1/n for n={n} {unit}s: a mechanism that publishes "
            f"each {unit}'s data outright with probability delta is (0, delta)-DP, and at "
            f"delta >= 1/n it is expected to publish at least one whole {unit}; use delta "
            f"well below 1/n, e.g. default_delta(n) = {default_delta(n):g}"
        )
