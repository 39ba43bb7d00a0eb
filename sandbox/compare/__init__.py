"""Compare the runs of a sweep: privacy (ε) against utility and attack success, Pareto per task.

`python -m sandbox.compare SWEEP_DIR` reads every run under SWEEP_DIR (``record.json`` files,
Hydra job directories, and the jobs each ``multirun.yaml`` planned), lists runs without a
usable record as skipped with the reason, and writes ``frontier.md``, ``frontier.csv``,
``frontier_utility.png`` and ``frontier_attack.png`` there.

Modules: ``sweep`` (finding jobs), ``points`` (what is read off a record), ``pareto`` (the
dominance rule, pure), ``frontier`` (ranking, Markdown and CSV), ``plots`` (matplotlib, Agg).
"""

from sandbox.compare.frontier import CompareError, Frontier, Row, Skipped, read_frontier
from sandbox.compare.pareto import Objectives, ParetoResult, dominates, pareto_front
from sandbox.compare.points import Point, RecordError, point_from_record

__all__ = [
    "CompareError",
    "Frontier",
    "Objectives",
    "ParetoResult",
    "Point",
    "RecordError",
    "Row",
    "Skipped",
    "dominates",
    "pareto_front",
    "point_from_record",
    "read_frontier",
]
