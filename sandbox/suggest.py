"""`python -m sandbox.suggest RUN_DIR TEXT... [--k K]`: a trained model's suggestions (``sandbox.serve``).

Prints, for each TEXT, the k most likely labels (emoji, jobs, channels) with their probabilities.
A run directory that cannot serve (no record, a model.pt that is not the recorded one, a record
written before models could serve) is one ``error:`` line and exit 3.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.cli import ArgumentParser, Exit, fail


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m sandbox.suggest", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory (record.json and model.pt)")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="a message (emoji) or what a member wrote")
    parser.add_argument("--k", type=int, default=None, help="how many suggestions (default: the task's top_k)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sandbox.serve import ServeError, load  # torch: after the arguments are parsed

    if args.k is not None and args.k < 1:
        return fail(f"--k: must be ≥ 1, got {args.k}")
    try:
        suggester = load(args.run_dir)
    except ServeError as exc:
        return fail(str(exc))
    for text, suggestions in zip(args.texts, suggester.suggest_many(args.texts, args.k)):
        shown = "  ".join(f"{s.label} {s.probability:.3f}" for s in suggestions)
        print(f"{text!r}: {shown}")
    return Exit.OK


if __name__ == "__main__":
    raise SystemExit(main())
