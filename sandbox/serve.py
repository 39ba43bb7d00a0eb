"""A trained model that serves suggestions: ``sandbox.load(RUN_DIR).suggest(text, k)``.

A run directory holds what inference needs: ``model.pt`` (the weights), and in ``record.json`` the
task's config (``config.task``: its class and keys, hence the featuriser: buckets, bigrams, the
token budget), the task and network classes, the label space in class-id order (``model.classes``:
the emoji, or the job or channel names) and the tokenizer's version (``model.tokenizer``).
``load`` rebuilds the task from the recorded config, the network with ``task.build_model``, checks
that ``model.pt`` is the recorded model (its sha256 fingerprint) and that this code tokenizes as the
model was trained, and returns a :class:`Suggester`.

``suggest(text, k)`` featurises one text exactly as training did (``task.featurize``) and returns
the k most likely labels with their softmax probabilities: for ``task=emoji`` the text is a
message; for ``task=jobs|channels`` it is what the member wrote (their messages, their profile),
which is what those models read. ``python -m sandbox.suggest RUN_DIR "text"`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sandbox.config import ConfigError, build_task
from sandbox.data.normalize import TOKENIZER
from sandbox.record import RecordError, model_fingerprint
from sandbox.record import load as load_record


class ServeError(ValueError):
    """A run directory that cannot serve: the message names the file and what to do."""


@dataclass(frozen=True)
class Suggestion:
    label: str
    probability: float


class Suggester:
    """A trained model and its task, in eval mode (``load``)."""

    def __init__(self, task, model: torch.nn.Module, classes: tuple[str, ...], run_dir: Path):
        self.task, self.model, self.classes, self.run_dir = task, model.eval(), tuple(classes), run_dir

    @property
    def top_k(self) -> int:
        return int(self.task.top_k)

    def suggest(self, text: str, k: int | None = None) -> list[Suggestion]:
        """The ``k`` (default: the task's ``top_k``) most likely labels for ``text``, most likely first."""
        return self.suggest_many([text], k)[0]

    def suggest_many(self, texts, k: int | None = None) -> list[list[Suggestion]]:
        k = self.top_k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        texts = [str(t) for t in texts]
        with torch.no_grad():
            probs = torch.softmax(self.model(self.task.featurize(texts)).double(), dim=1)
        top = torch.topk(probs, min(k, probs.shape[1]), dim=1)
        return [
            [Suggestion(self.classes[int(i)], float(p)) for p, i in zip(values, indices)]
            for values, indices in zip(top.values, top.indices)
        ]


def load(run_dir: str | Path) -> Suggester:
    """The model of ``run_dir`` (module docstring); ``ServeError`` naming the file when it cannot serve."""
    run_dir = Path(run_dir)
    try:
        record = load_record(run_dir)
    except RecordError as exc:
        raise ServeError(str(exc)) from None
    where = run_dir / "record.json"
    model = record.get("model") or {}
    classes = model.get("classes")
    if not classes:
        raise ServeError(
            f"{where}: model.classes: the record has no label space (written before models could serve); "
            "re-run the training to get a run directory that serves"
        )
    if model.get("tokenizer") != TOKENIZER:
        raise ServeError(
            f"{where}: model.tokenizer: the model was trained with tokenizer {model.get('tokenizer')!r}, this "
            f"code tokenizes as {TOKENIZER!r}: its suggestions would not be the model's; use the sandbox "
            "version of record.versions or re-train"
        )
    try:
        task = build_task(record.get("config")["task"])
    except ConfigError as exc:
        raise ServeError(f"{where}: config.task: {exc}") from None
    path = run_dir / str(model.get("file") or "model.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise ServeError(f"{path}: cannot read the model: {exc}") from None
    if model_fingerprint(state) != model.get("sha256"):
        raise ServeError(f"{path}: not the model of {where} (its sha256 fingerprint differs)")
    network = task.build_model(len(classes))
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ServeError(f"{path}: does not fit {model.get('model_class')}: {str(exc).splitlines()[0]}") from None
    return Suggester(task, network, tuple(classes), run_dir)
