"""`python -m sandbox.data`: generate a synthetic corpus to disk, or validate one.

    python -m sandbox.data generate --out DIR --format {jsonl,csv,parquet} [--seed N]
                                    [--n-users N] [--n-workspaces N]
    python -m sandbox.data validate DIR

Bad input prints one line starting with "error:" on stderr and exits with status 3 (``sandbox.cli``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from sandbox.cli import Exit
from sandbox.data.io import FORMATS, corpus_format, load_corpus, write_corpus
from sandbox.data.normalize import text_words
from sandbox.data.schema import CorpusError
from sandbox.data.synthetic import SyntheticConfig, generate_corpus

EXIT_BAD_INPUT = int(Exit.BAD_INPUT)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line "error: …" messages (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="python -m sandbox.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write a synthetic corpus and its canaries.json")
    generate.add_argument("--out", required=True, help="new (or empty) directory to write")
    generate.add_argument("--format", required=True, choices=FORMATS)
    defaults = SyntheticConfig()
    generate.add_argument("--seed", type=int, default=defaults.seed)
    generate.add_argument("--n-users", type=int, default=defaults.n_users)
    generate.add_argument("--n-workspaces", type=int, default=defaults.n_workspaces)
    validate = commands.add_parser("validate", help="load a corpus directory and print its summary")
    validate.add_argument("directory")
    return parser


def _generate(args: argparse.Namespace) -> str:
    config = SyntheticConfig(seed=args.seed, n_users=args.n_users, n_workspaces=args.n_workspaces)
    corpus, manifest = generate_corpus(config)
    path = write_corpus(corpus, args.out, fmt=args.format, manifest=manifest)
    return (
        f"wrote {path} ({args.format}): {corpus.n_workspaces} workspaces, {corpus.n_users} users, "
        f"{corpus.n_messages} messages, {len(manifest.planted)} canaries, "
        f"fingerprint {corpus.fingerprint()}"
    )


def _validate(args: argparse.Namespace) -> str:
    corpus = load_corpus(args.directory)
    empty = sum(1 for text in corpus.texts if not text_words(text))
    share = empty / corpus.n_messages if corpus.n_messages else 0.0
    return (
        f"ok {args.directory} ({corpus_format(args.directory)}): "
        f"{corpus.n_workspaces} workspaces ({int(corpus.workspace_opted_out.sum())} opted out), "
        f"{corpus.n_users} users ({int((~corpus.user_consented()).sum())} without consent), "
        f"{corpus.n_messages} messages ({empty} = {share:.1%} yield no token: no letter, digit or emoji), "
        f"fingerprint {corpus.fingerprint()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        summary = _generate(args) if args.command == "generate" else _validate(args)
    except (CorpusError, ValueError, OSError) as error:
        # ValueError covers SyntheticConfig rules (e.g. --n-users below --n-workspaces).
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
