"""`python -m sandbox.data`: generate a synthetic corpus to disk, validate one, or plant canaries into a copy.

    python -m sandbox.data generate --out DIR --format {jsonl,csv,parquet} [--seed N]
                                    [--n-users N] [--n-workspaces N]
    python -m sandbox.data validate DIR
    python -m sandbox.data plant DIR OUT_DIR [--canaries N] [--repeats R] [--users K] [--fresh F]
                                 [--format FMT] [--seed S] [--manifest PATH]

Bad input prints one line starting with "error:" on stderr and exits with status 3 (``sandbox.cli``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from sandbox.cli import Exit
from sandbox.data.io import FORMATS, corpus_format, load_corpus, write_corpus
from sandbox.data.normalize import text_words
from sandbox.data.plant import plant_canaries, write_manifest
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
    plant = commands.add_parser(
        "plant",
        help="copy a corpus with canaries planted into consenting users' messages; the manifest apart from it",
    )
    plant.add_argument("directory", help="the corpus to copy (left untouched)")
    plant.add_argument("out", help="new (or empty) directory for the copy")
    plant.add_argument("--canaries", type=int, default=100, help="canaries planted (default 100)")
    plant.add_argument("--repeats", type=int, default=4, help="times each is written into each host (default 4)")
    plant.add_argument("--users", type=int, default=1, help="hosts per canary (default 1)")
    plant.add_argument("--fresh", type=int, default=1000, help="same-space secrets never planted (default 1000)")
    plant.add_argument("--format", choices=FORMATS, default=None, help="of the copy (default: the corpus's)")
    plant.add_argument("--seed", type=int, default=0, help="draws the secrets, hosts and positions (default 0)")
    plant.add_argument("--manifest", default=None, help="where the manifest goes (default OUT.canaries.json)")
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


def _plant(args: argparse.Namespace) -> str:
    out = Path(args.out)
    manifest_path = Path(args.manifest) if args.manifest else out.with_name(out.name + ".canaries.json")
    if manifest_path.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"--manifest: {manifest_path} is inside the corpus copy; training must never read it")
    if manifest_path.exists():  # refused before anything is written
        raise CorpusError(f"{manifest_path}: exists; the manifest is the audits' ground truth and is never overwritten")
    corpus = load_corpus(args.directory)
    planted, manifest = plant_canaries(
        corpus,
        n_canaries=args.canaries,
        repeats=args.repeats,
        users_per_canary=args.users,
        n_fresh=args.fresh,
        seed=args.seed,
    )
    fmt = args.format or corpus_format(args.directory)
    path = write_corpus(planted, out, fmt=fmt)
    write_manifest(manifest, manifest_path)
    return (
        f"wrote {path} ({fmt}): {planted.n_messages - corpus.n_messages} canary messages ({args.canaries} canaries "
        f"× {args.users} users × {args.repeats}) into consenting users; manifest {manifest_path} (apart from the "
        f"corpus: train with data=files data.path={path}, audit with data.manifest={manifest_path}); "
        f"fingerprint {planted.fingerprint()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        command = {"generate": _generate, "validate": _validate, "plant": _plant}[args.command]
        summary = command(args)
    except (CorpusError, ValueError, OSError) as error:
        # ValueError covers SyntheticConfig rules (e.g. --n-users below --n-workspaces).
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
