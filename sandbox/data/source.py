"""The corpus a data config names: generated (``data=synthetic``) or loaded (``data=files``)."""

from __future__ import annotations

from pathlib import Path

from sandbox.config.schema import ConfigError, DataConfig
from sandbox.data.canaries import CanaryManifest
from sandbox.data.io import load_corpus
from sandbox.data.schema import Corpus
from sandbox.data.synthetic import generate_corpus


def corpus_from_config(data: DataConfig) -> tuple[Corpus, CanaryManifest | None]:
    """(corpus, its canary manifest or None). A synthetic config the generator refuses is a
    ``ConfigError`` naming ``data.KEY``; a corpus file that cannot be read is a ``CorpusError``."""
    if data.source == "files":
        return load_corpus(Path(data.path)), None
    try:
        return generate_corpus(data.synthetic)
    except ValueError as exc:  # SyntheticConfig names the field it refuses
        raise ConfigError(f"data: {exc}".replace("data: SyntheticConfig.", "data.")) from None
