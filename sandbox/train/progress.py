"""Progress on long loops: a rich bar on stderr that stays quiet when stderr is not a terminal."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def progress_bar(enabled: bool, *, unit: str, label: str = "training", show_loss: bool = True):
    """Yields ``show(done, total, loss)``; a no-op when disabled or not on a terminal (logs, CI)."""
    console = Console(stderr=True)
    loss = "  loss {task.fields[loss]:.3f}" if show_loss else ""
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        TextColumn(f"{{task.completed}}/{{task.total}} {unit}{loss}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
    with bar:
        task = bar.add_task("training", total=None, loss=float("nan"))

        def show(done: int, total: int, loss: float | None) -> None:
            bar.update(task, completed=done, total=total, loss=float("nan") if loss is None else loss)

        yield show
