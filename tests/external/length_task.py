"""A task defined outside ``sandbox/``, as a team would write its own: message text → its length class.

It implements ``sandbox.tasks.base.Task`` by reusing the hashed-text ``MessageTask``: it says which
label each message has and how a planted canary is labelled; the rest (split, model, evaluation,
audits) is the sandbox's. Plugged in with ``task._target_=tests.external.length_task.LengthTask``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.tasks.text import MessageTask

CLASSES = ("short", "medium", "long")


def length_class(text: str) -> str:
    words = len(text.split())
    return "short" if words <= 4 else "medium" if words <= 8 else "long"


@dataclass(frozen=True)
class LengthTask(MessageTask):
    """Suggest how long a reply will be (a stand-in for a team's own label)."""

    name: str = "length"
    n_buckets: int = 4096
    max_tokens: int = 32
    bigrams: bool = False
    embedding_dim: int = 16
    hidden_dim: int = 16
    test_fraction: float = 0.2
    top_k: int = 1

    def message_labels(self, corpus) -> list[str | None]:
        return [length_class(text) for text in corpus.texts]

    def canary_label(self, canary) -> str | None:
        return length_class(canary.text)
