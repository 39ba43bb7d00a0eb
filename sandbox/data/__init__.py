"""Corpus of the sandbox: schema, synthetic generator, canaries and on-disk formats."""

from sandbox.data.canaries import (
    CANARY_TEMPLATE,
    SECRET_SPACE,
    SECRET_SPACE_SIZE,
    Canary,
    CanaryManifest,
    draw_canary_manifest,
    format_secret,
    secret_pattern,
)
from sandbox.data.io import FORMATS, corpus_format, load_corpus, load_manifest, write_corpus
from sandbox.data.lexicon import REACTION_EMOJI, emoji_keywords
from sandbox.data.schema import Corpus, CorpusError
from sandbox.data.source import corpus_from_config
from sandbox.data.synthetic import SyntheticConfig, generate_corpus

__all__ = [
    "CANARY_TEMPLATE",
    "FORMATS",
    "REACTION_EMOJI",
    "SECRET_SPACE",
    "SECRET_SPACE_SIZE",
    "Canary",
    "CanaryManifest",
    "Corpus",
    "CorpusError",
    "SyntheticConfig",
    "corpus_format",
    "corpus_from_config",
    "draw_canary_manifest",
    "emoji_keywords",
    "format_secret",
    "generate_corpus",
    "load_corpus",
    "load_manifest",
    "secret_pattern",
    "write_corpus",
]
