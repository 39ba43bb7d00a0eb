"""`python -m sandbox.budget`: epsilon <-> sigma calculator for Poisson-sampled DP-SGD/DP-FedAvg.

  epsilon for a noise multiplier:
      --sigma 1.1 --sample-rate 0.004 --steps 15000 --delta 1e-5
      --sigma 1.1 --batch-size 256 --n 60000 --epochs 60        (delta = default_delta(n))
  sigma for a target epsilon:
      --target-epsilon 4 --sample-rate 0.004 --steps 15000 --delta 1e-5

  the privacy ledger (ε spent per data set and unit across runs):
      --ledger [PATH]        (default $SANDBOX_LEDGER, else outputs/privacy_ledger.json)

Every number comes from the run's own plan functions (sandbox.privacy.plan), so the answer
is what a run executes. With --batch-size B and --n N it is central DP-SGD's plan: Opacus'
Poisson loader samples at q = 1/ceil(N/B), and --epochs E runs round(E * ceil(N/B)) steps.
With --sample-rate q, --epochs E is round(E / q) steps (client DP-SGD's local steps rule).
One row per accountant (rdp, prv, gdp; ``--accountant`` picks one); ``--json`` prints one
JSON object instead. Without --delta, delta = default_delta(n). Exit codes (sandbox.cli):
0 ok; 3 bad input, or an accountant failed (the others are still printed); one
``error: ...`` line on stderr, naming the flag, and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass

from sandbox.cli import Exit, fail, run_main
from sandbox.privacy import (
    ACCOUNTANTS,
    NEIGHBOURING_RELATION,
    UNITS,
    AccountingError,
    PrivacyInputError,
    check_delta,
    default_delta,
    validate_privacy_inputs,
)
from sandbox.privacy.ledger import LedgerError, PrivacyLedger
from sandbox.privacy.plan import (
    SAMPLING,
    PlanInputError,
    PrivacyPlan,
    batches_per_epoch,
    epoch_steps,
    local_steps,
    plan_dpsgd,
    plan_gaussian,
)

ACCOUNTANT_NOTES = {
    "rdp": "upper bound (RDP, Balle et al. 2020 conversion)",
    "prv": "upper bound up to eps_error 0.01 (PRV, Gopi et al. 2021)",
    "gdp": "CLT approximation (Bu et al. 2020); can underestimate epsilon",
}
FLAGS = {
    "n_examples": "--n",
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "sample_rate": "--sample-rate",
    "steps": "--steps",
    "noise_multiplier": "--sigma",
    "target_epsilon": "--target-epsilon",
    "delta": "--delta",
    "unit": "--unit",
    "accountant": "--accountant",
}


class BudgetUsageError(Exception):
    """Bad command line (argparse's own complaints, routed to one `error:` line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit; we report once
        raise BudgetUsageError(message)


@dataclass(frozen=True)
class BudgetQuery:
    """Validated inputs: exactly one of noise_multiplier / target_epsilon is set.

    With batch_size and n the question is central DP-SGD's plan (``plan_dpsgd``): sample_rate is
    1/batches_per_epoch (``sample_rate_exact``, e.g. "1/235") and steps come from epochs as a run
    counts them. Otherwise (sample_rate, steps) are a bare Gaussian plan (``plan_gaussian``).
    """

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
    sample_rate_exact: str | None = None
    batches_per_epoch: int | None = None
    steps_rule: str = "--steps"


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
    parser.add_argument("--batch-size", type=int, help="expected batch size; q = 1/ceil(n / batch_size), as a run")
    parser.add_argument("--n", type=int, help="population size (units); also sets default delta")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="number of steps (or rounds)")
    length.add_argument(
        "--epochs",
        type=float,
        help="steps = round(epochs * ceil(n / batch_size)), or round(epochs / q) with --sample-rate",
    )
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


def _flagged(error: PlanInputError) -> PrivacyInputError:
    return PrivacyInputError(f"{FLAGS.get(error.key, error.key)}: {error}")


def _delta(args: argparse.Namespace) -> tuple[float, str]:
    if args.n is not None and args.n < 1:
        raise PrivacyInputError(f"--n must be an integer >= 1, got {args.n}")
    if args.delta is None:
        if args.n is None:
            raise PrivacyInputError("give --delta, or --n to use default_delta(n) <= 1/(10 n)")
        return default_delta(args.n), "default_delta(n)"
    _check_flag("--delta", delta=args.delta)
    if args.n is not None:
        try:
            check_delta(delta=args.delta, n=args.n, unit=args.unit)
        except PrivacyInputError as error:
            raise PrivacyInputError(f"--delta: {error}") from None
    return args.delta, "--delta"


def _schedule(args: argparse.Namespace) -> dict:
    """(q, steps) as the plan functions count them; raises PrivacyInputError naming the flag."""
    if args.sample_rate is not None:
        if args.batch_size is not None:
            raise PrivacyInputError("--sample-rate: give either --sample-rate or --batch-size with --n, not both")
        _check_flag("--sample-rate", sample_rate=args.sample_rate)
        if args.epochs is None:
            _check_flag("--steps", steps=args.steps)
            return {"sample_rate": args.sample_rate, "steps": args.steps}
        return {
            "sample_rate": args.sample_rate,
            "steps": local_steps(epochs=args.epochs, sample_rate=args.sample_rate),
            "steps_rule": f"round({args.epochs:g} epochs / q)",
        }
    if args.batch_size is None or args.n is None:
        raise PrivacyInputError("--sample-rate: give --sample-rate, or --batch-size together with --n")
    if args.batch_size < 1 or args.n < 1:
        flag = "--batch-size" if args.batch_size < 1 else "--n"
        raise PrivacyInputError(
            f"{flag}: --batch-size and --n must be integers >= 1, got {args.batch_size} and {args.n}"
        )
    if args.n < args.batch_size:
        raise PrivacyInputError(f"--batch-size {args.batch_size} exceeds --n {args.n}")
    batches = batches_per_epoch(n_examples=args.n, batch_size=args.batch_size)
    if args.epochs is None:
        _check_flag("--steps", steps=args.steps)
        steps, rule = args.steps, "--steps"
    else:
        steps = epoch_steps(n_examples=args.n, batch_size=args.batch_size, epochs=args.epochs)
        rule = f"round({args.epochs:g} epochs × ceil(n/batch_size) = {batches})"
    return {
        "sample_rate": 1 / batches,
        "steps": steps,
        "steps_rule": rule,
        "batches_per_epoch": batches,
        "sample_rate_exact": f"1/{batches}",
    }


def query_from_args(args: argparse.Namespace) -> BudgetQuery:
    """Validate parsed flags into a BudgetQuery; raises PrivacyInputError naming the flag."""
    _check_flag("--sigma", noise_multiplier=args.sigma)
    _check_flag("--target-epsilon", target_epsilon=args.target_epsilon)
    delta, delta_source = _delta(args)
    try:
        schedule = _schedule(args)
    except PlanInputError as error:
        raise _flagged(error) from None
    return BudgetQuery(
        delta=delta,
        unit=args.unit,
        accountants=(args.accountant,) if args.accountant else ACCOUNTANTS,
        noise_multiplier=args.sigma,
        target_epsilon=args.target_epsilon,
        batch_size=args.batch_size,
        n=args.n,
        epochs=args.epochs,
        delta_source=delta_source,
        **schedule,
    )


def plan_of(query: BudgetQuery, accountant: str) -> PrivacyPlan:
    """The query's plan for one accountant, by the plan functions runs use (``sandbox.privacy.plan``)."""
    question = {
        "noise_multiplier": query.noise_multiplier,
        "target_epsilon": query.target_epsilon,
        "delta": query.delta,
        "accountant": accountant,
        "unit": query.unit,
    }
    if query.batch_size is not None:  # central DP-SGD: q = 1/⌈N/B⌉, steps as a run counts them
        length = {"epochs": query.epochs} if query.epochs is not None else {"steps": query.steps}
        return plan_dpsgd(n_examples=query.n, batch_size=query.batch_size, **length, **question)
    return plan_gaussian(sample_rate=query.sample_rate, steps=query.steps, **question)


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
            plan = plan_of(query, accountant)  # σ calibrated (its search's warnings muted), then ε
            if (plan.sample_rate, plan.steps) != (query.sample_rate, query.steps):
                raise RuntimeError(
                    f"the plan ({plan.sample_rate}, {plan.steps}) is not the query's "
                    f"({query.sample_rate}, {query.steps})"
                )
            sigma, epsilon = plan.noise_multiplier, plan.planned_epsilon
            if not math.isfinite(epsilon):
                sigma, epsilon = None, None
                raise ArithmeticError(f"epsilon is {plan.planned_epsilon}: no finite guarantee at this sigma")
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
        rate += f" ({query.sample_rate_exact} = 1/ceil(n={query.n} / batch_size={query.batch_size}))"
    steps = f"steps={query.steps}"
    if query.steps_rule != "--steps":
        steps += f" ({query.steps_rule})"
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
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths + [0])).rstrip() for row in [columns, *rows]
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

    path = path or os.environ.get("SANDBOX_LEDGER", "outputs/privacy_ledger.json")
    try:
        print(PrivacyLedger(path).table())
    except LedgerError as error:
        return fail(f"--ledger: {error}")
    return Exit.OK


def main(argv: list[str] | None = None) -> int:
    """Run the calculator; returns the exit code (``sandbox.cli``: 0 ok, 3 bad input or an accountant failed)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--ledger"]:
        if len(argv) > 2:
            return fail("--ledger takes at most one path")
        return int(show_ledger(argv[1] if len(argv) == 2 else None))
    try:
        args = _parser().parse_args(argv)
        query = query_from_args(args)
    except (BudgetUsageError, PrivacyInputError) as error:
        return fail(str(error))
    except SystemExit as done:  # --help
        return int(done.code or 0)
    results = [evaluate(query=query, accountant=name) for name in query.accountants]
    if args.json:
        print(json.dumps(to_json(query=query, results=results), indent=2, allow_nan=False))
    else:
        print(format_table(query=query, results=results))
    for result in results:
        if result.error is not None:
            print(f"error: --accountant {result.accountant} failed: {result.error}", file=sys.stderr)
    return int(Exit.BAD_INPUT if any(result.error for result in results) else Exit.OK)


if __name__ == "__main__":
    run_main(main, bad_input=(PrivacyInputError, AccountingError))
