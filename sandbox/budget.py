"""`python -m sandbox.budget`: epsilon <-> sigma calculator for Poisson-sampled DP-SGD/DP-FedAvg.

  epsilon for a noise multiplier:
      --sigma 1.1 --sample-rate 0.004 --steps 15000 --delta 1e-5
      --sigma 1.1 --batch-size 256 --n 60000 --epochs 60        (delta = default_delta(n))
  sigma for a target epsilon:
      --target-epsilon 4 --sample-rate 0.004 --steps 15000 --delta 1e-5

  the privacy ledger (ε spent per data set and unit across runs):
      --ledger [PATH]        (default $SANDBOX_LEDGER, else outputs/privacy_ledger.json)

One row per accountant (rdp, prv, gdp; ``--accountant`` picks one); ``--json`` prints
one JSON object instead. Sample rate q = batch_size / n is the Poisson expected batch
fraction; steps from epochs = ceil(epochs / q), so a final partial epoch counts as a
step. Without --delta, delta = default_delta(n). Exit codes: 0 ok, 1 an accountant failed
(the others are still printed), 2 impossible or incomplete inputs.
"""

from __future__ import annotations

import argparse
import os
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction

from sandbox.privacy import (
    ACCOUNTANTS,
    NEIGHBOURING_RELATION,
    UNITS,
    AccountingError,
    PrivacyInputError,
    SubsampledGaussianEvent,
    check_delta,
    default_delta,
    epsilon_for,
    noise_multiplier_for,
    validate_privacy_inputs,
)

SAMPLING = "poisson"
ACCOUNTANT_NOTES = {
    "rdp": "upper bound (RDP, Balle et al. 2020 conversion)",
    "prv": "upper bound up to eps_error 0.01 (PRV, Gopi et al. 2021)",
    "gdp": "CLT approximation (Bu et al. 2020); can underestimate epsilon",
}


class BudgetUsageError(Exception):
    """Bad command line (argparse's own complaints, routed to one `error:` line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit; we report once
        raise BudgetUsageError(message)


@dataclass(frozen=True)
class BudgetQuery:
    """Validated inputs: exactly one of noise_multiplier / target_epsilon is set."""

    sample_rate: float
    steps: int
    delta: float
    unit: str
    accountants: tuple[str, ...]
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    batch_size: int | None = None
    n: int | None = None
    epochs: float | None = None
    delta_source: str = "--delta"


@dataclass(frozen=True)
class AccountantResult:
    """One accountant's answer: ε for the query's σ, or σ for its target and the ε it gives."""

    accountant: str
    epsilon: float | None
    noise_multiplier: float | None
    error: str | None
    notes: tuple[str, ...]


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m sandbox.budget",
        description=__doc__.split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    question = parser.add_mutually_exclusive_group(required=True)
    question.add_argument("--sigma", type=float, help="noise multiplier (noise std / clip norm)")
    question.add_argument("--target-epsilon", type=float, help="find sigma reaching this epsilon")
    parser.add_argument("--sample-rate", type=float, help="Poisson sampling rate q in (0, 1]")
    parser.add_argument("--batch-size", type=int, help="expected batch size; q = batch_size / n")
    parser.add_argument("--n", type=int, help="population size (units); also sets default delta")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="number of steps (or rounds)")
    length.add_argument("--epochs", type=float, help="steps = ceil(epochs / q)")
    parser.add_argument("--delta", type=float, help="delta in (0, 1); default default_delta(n)")
    parser.add_argument("--unit", choices=UNITS, default="example", help="accounting unit")
    parser.add_argument("--accountant", choices=ACCOUNTANTS, help="only this accountant")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _check_flag(flag: str, **value: float | int | None) -> None:
    try:
        validate_privacy_inputs(**value)
    except PrivacyInputError as error:
        raise PrivacyInputError(f"{flag}: {error}") from None


def steps_from_epochs(*, epochs: float, sample_rate: Fraction) -> int:
    """ceil(epochs / q): with Poisson sampling an epoch is 1/q steps in expectation.

    Exact rational arithmetic (q = batch_size / n, or the shortest decimal of the
    float given) so that e.g. 7 epochs at q = 7 / 50000 is 50000 steps, not 50001
    from the float quotient 50000.00000000001.
    """
    if not math.isfinite(epochs) or epochs <= 0:
        raise PrivacyInputError(f"--epochs must be a finite number > 0, got {epochs!r}")
    return max(1, math.ceil(Fraction(repr(epochs)) / sample_rate))


def _sample_rate(args: argparse.Namespace) -> tuple[Fraction, float]:
    if args.sample_rate is not None:
        if args.batch_size is not None:
            raise PrivacyInputError("give either --sample-rate or --batch-size with --n, not both")
        _check_flag("--sample-rate", sample_rate=args.sample_rate)
        return Fraction(repr(args.sample_rate)), args.sample_rate
    if args.batch_size is None or args.n is None:
        raise PrivacyInputError("give --sample-rate, or --batch-size together with --n")
    if args.batch_size < 1 or args.n < 1:
        raise PrivacyInputError(
            f"--batch-size and --n must be integers >= 1, got {args.batch_size} and {args.n}"
        )
    if args.n < args.batch_size:
        raise PrivacyInputError(f"--batch-size {args.batch_size} exceeds --n {args.n}")
    return Fraction(args.batch_size, args.n), args.batch_size / args.n


def _delta(args: argparse.Namespace) -> tuple[float, str]:
    if args.n is not None and args.n < 1:
        raise PrivacyInputError(f"--n must be an integer >= 1, got {args.n}")
    if args.delta is None:
        if args.n is None:
            raise PrivacyInputError("give --delta, or --n to use default_delta(n) <= 1/(10 n)")
        return default_delta(args.n), "default_delta(n)"
    _check_flag("--delta", delta=args.delta)
    if args.n is not None:
        check_delta(delta=args.delta, n=args.n, unit=args.unit)
    return args.delta, "--delta"


def query_from_args(args: argparse.Namespace) -> BudgetQuery:
    """Validate parsed flags into a BudgetQuery; raises PrivacyInputError naming the flag."""
    _check_flag("--sigma", noise_multiplier=args.sigma)
    _check_flag("--target-epsilon", target_epsilon=args.target_epsilon)
    delta, delta_source = _delta(args)
    exact_rate, sample_rate = _sample_rate(args)
    if args.epochs is not None:
        steps = steps_from_epochs(epochs=args.epochs, sample_rate=exact_rate)
    else:
        _check_flag("--steps", steps=args.steps)
        steps = args.steps
    return BudgetQuery(
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        unit=args.unit,
        accountants=(args.accountant,) if args.accountant else ACCOUNTANTS,
        noise_multiplier=args.sigma,
        target_epsilon=args.target_epsilon,
        batch_size=args.batch_size,
        n=args.n,
        epochs=args.epochs,
        delta_source=delta_source,
    )


def _calibrated_sigma(query: BudgetQuery, accountant: str) -> float:
    if query.noise_multiplier is not None:
        return query.noise_multiplier
    with warnings.catch_warnings():
        # the search visits σ far from the answer; its accountant warnings are noise
        warnings.simplefilter("ignore")
        return noise_multiplier_for(
            target_epsilon=query.target_epsilon,
            delta=query.delta,
            sample_rate=query.sample_rate,
            steps=query.steps,
            accountant=accountant,
        )


def _epsilon(query: BudgetQuery, sigma: float, accountant: str) -> float:
    event = SubsampledGaussianEvent(
        noise_multiplier=sigma, sample_rate=query.sample_rate, steps=query.steps, sampling=SAMPLING
    )
    epsilon = epsilon_for(events=[event], delta=query.delta, accountant=accountant)
    if not math.isfinite(epsilon):
        raise ArithmeticError(f"epsilon is {epsilon}: no finite guarantee at this sigma")
    return epsilon


def _describe(failure: Exception) -> str:
    if isinstance(failure, (PrivacyInputError, AccountingError)):
        return str(failure)  # our own messages already say what failed and why
    return f"{type(failure).__name__}: {failure}"


def evaluate(*, query: BudgetQuery, accountant: str) -> AccountantResult:
    """Answer the query with one accountant; a failure becomes the result's ``error``,
    and warnings raised while computing the reported ε become notes."""
    sigma = epsilon = error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sigma = _calibrated_sigma(query, accountant)
            epsilon = _epsilon(query, sigma, accountant)
        except Exception as failure:  # CLI edge: report any accountant failure, keep going
            error = _describe(failure)
    notes = dict.fromkeys([ACCOUNTANT_NOTES[accountant], *(str(w.message) for w in caught)])
    return AccountantResult(accountant, epsilon, sigma, error, tuple(notes))


def _header(query: BudgetQuery) -> str:
    if query.noise_multiplier is not None:
        question = f"sigma={query.noise_multiplier:g}"
    else:
        question = f"target_epsilon={query.target_epsilon:g}"
    rate = f"sample_rate={query.sample_rate:.6g}"
    if query.batch_size is not None:
        rate += f" (batch_size={query.batch_size} / n={query.n})"
    steps = f"steps={query.steps}"
    if query.epochs is not None:
        steps += f" (ceil({query.epochs:g} epochs / q))"
    relation = f"{NEIGHBOURING_RELATION[SAMPLING]} {query.unit}"
    return (
        f"{question}  {rate}  {steps}  delta={query.delta:g} ({query.delta_source})\n"
        f"unit={query.unit}  sampling={SAMPLING}  neighbouring relation: {relation}"
    )


def format_table(*, query: BudgetQuery, results: list[AccountantResult]) -> str:
    """Plain aligned text: header lines, then one row per accountant."""
    solve_sigma = query.noise_multiplier is None
    columns = ["accountant", *(["sigma"] if solve_sigma else []), "epsilon", "note"]
    rows = []
    for result in results:
        if result.error is not None:
            values = ["failed"] * (len(columns) - 2) + [result.error]
        else:
            values = [f"{result.epsilon:.4g}", "; ".join(result.notes)]
            if solve_sigma:
                values.insert(0, f"{result.noise_multiplier:.4g}")
        rows.append([result.accountant, *values])
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths + [0])).rstrip()
        for row in [columns, *rows]
    ]
    return _header(query) + "\n\n" + "\n".join(lines)


def to_json(*, query: BudgetQuery, results: list[AccountantResult]) -> dict:
    """One JSON-serialisable object: inputs (incl. sampling, neighbouring relation), results."""
    inputs = asdict(query) | {
        "sampling": SAMPLING,
        "neighbouring_relation": f"{NEIGHBOURING_RELATION[SAMPLING]} {query.unit}",
        "accountants": list(query.accountants),
    }
    per_accountant = {r.accountant: asdict(r) | {"notes": list(r.notes)} for r in results}
    return {"inputs": inputs, "results": per_accountant}


def show_ledger(path: str | None) -> int:
    """``--ledger [PATH]``: ε spent per data set and unit (default ``$SANDBOX_LEDGER`` or outputs/)."""
    from sandbox.privacy.ledger import LedgerError, PrivacyLedger

    path = path or os.environ.get("SANDBOX_LEDGER", "outputs/privacy_ledger.json")
    try:
        print(PrivacyLedger(path).table())
    except LedgerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the calculator; returns the exit code (0 ok, 1 an accountant failed, 2 bad input)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--ledger"]:
        if len(argv) > 2:
            print("error: --ledger takes at most one path", file=sys.stderr)
            return 2
        return show_ledger(argv[1] if len(argv) == 2 else None)
    try:
        args = _parser().parse_args(argv)
        query = query_from_args(args)
    except (BudgetUsageError, PrivacyInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    results = [evaluate(query=query, accountant=name) for name in query.accountants]
    if args.json:
        print(json.dumps(to_json(query=query, results=results), indent=2, allow_nan=False))
    else:
        print(format_table(query=query, results=results))
    for result in results:
        if result.error is not None:
            print(f"error: accountant {result.accountant} failed: {result.error}", file=sys.stderr)
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
