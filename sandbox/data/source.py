"""The corpus a data config names: generated (``data=synthetic``; columnar at scale, ``data.layout``) or loaded (``data=files``, with the canary
manifest ``data.manifest`` when canaries were planted: ``sandbox.data.plant``)."""

from __future__ import annotations

from pathlib import Path

from sandbox.config.schema import ConfigError, DataConfig
from sandbox.data.canaries import CanaryManifest
from sandbox.data.columnar import ColumnarCorpus
from sandbox.data.io import load_corpus
from sandbox.data.plant import read_manifest
from sandbox.data.scale import generate_columnar_corpus, uses_columnar
from sandbox.data.schema import Corpus
from sandbox.data.synthetic import generate_corpus


def corpus_from_config(data: DataConfig) -> tuple[Corpus | ColumnarCorpus, CanaryManifest | None]:
    """(corpus, its canary manifest or None). A synthetic config the generator refuses is a
    ``ConfigError`` naming ``data.KEY``; a corpus file that cannot be read is a ``CorpusError``."""
    if data.source == "files":
        corpus = load_corpus(Path(data.path))
        return corpus, None if data.manifest is None else read_manifest(data.manifest, corpus)
    try:
        if uses_columnar(data.synthetic):  # data.layout: integer columns drawn in chunks (sandbox.data.scale)
            return generate_columnar_corpus(data.synthetic)
        return generate_corpus(data.synthetic)
    except ValueError as exc:  # SyntheticConfig names the field it refuses
        raise ConfigError(f"data: {exc}".replace("data: SyntheticConfig.", "data.")) from None
