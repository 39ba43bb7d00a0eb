"""The scale tools of issue 17: benchmarks.population (one real tiny run) and the utility plot's table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks.population import run_population

ROOT = Path(__file__).resolve().parents[1]


def _plot_module():
    spec = importlib.util.spec_from_file_location("scale_plot", ROOT / "scripts/utility_plot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_a_population_benchmark_row_is_what_its_run_recorded(tmp_path):
    row = run_population(1500, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert row["users"] == 1500 and row["messages"] == record["data"]["n_messages"] > 1500
    assert row["round_seconds"] == record["timing"]["round_seconds"] > 0
    assert 0 < row["data_seconds"] < record["timing"]["seconds"]
    assert row["peak_gb"] == record["timing"]["peak_rss_mb"] / 1024 and 0.1 < row["peak_gb"] < 8
    assert row["clients"] > 0
    assert record["privacy"]["mechanism"] == "dpfedavg" and len(record["curve"]) == 10


def _record(path: Path, users: int, mechanism: str, top5: float) -> None:
    path.mkdir(parents=True)
    privacy = {} if mechanism == "none" else {"mechanism": mechanism, "epsilon": 4.0}
    record = {
        "data": {"n_users": users},
        "privacy": privacy,
        "metrics": {"top5": top5, "baseline": {"top5": 0.36}},
        "curve": [{"clients": 100}, {"clients": 300}],
    }
    (path / "record.json").write_text(json.dumps(record))


def test_the_table_names_the_smallest_population_keeping_ninety_percent(tmp_path):
    plot = _plot_module()
    for users, fedavg, dp in ((1000, 0.60, 0.40), (10000, 0.62, 0.55), (100000, 0.63, 0.60)):
        _record(tmp_path / str(users) / "0", users, "none", fedavg)
        _record(tmp_path / str(users) / "1", users, "dpfedavg", dp)
    rows = plot.collect(tmp_path)
    assert list(rows) == [1000, 10000, 100000] and rows[1000]["none"]["clients"] == 200
    text = plot.table(rows)
    assert "| 1,000 | 200 | 0.600 | 0.400 | — | — | 67% | 0.360 |" in text  # 0.40 / 0.60
    assert "from **100,000 users**" in text  # 0.55 / 0.62 = 89% < 90% at 10,000
    plot.plot(rows, tmp_path / "utility.png")
    assert (tmp_path / "utility.png").stat().st_size > 1000


def test_no_population_keeping_ninety_percent_is_said(tmp_path):
    plot = _plot_module()
    _record(tmp_path / "500" / "0", 500, "none", 0.6)
    _record(tmp_path / "500" / "1", 500, "dpfedavg", 0.3)
    assert "at none of the measured populations" in plot.table(plot.collect(tmp_path))
    with pytest.raises(SystemExit, match="no record.json"):
        plot.collect(tmp_path / "empty")


def _ranking_record(path: Path, users: int, mechanism: str, recall: float, ci: tuple[float, float]) -> None:
    path.mkdir(parents=True)
    privacy = {} if mechanism == "none" else {"mechanism": mechanism, "epsilon": 4.0, "clipping": "adaptive"}
    ranking = {
        "held_out_users": {"recall@10": recall, "ndcg@10": 0.0, "n_users": 10},
        "held_out_users_popularity": {"recall@10": 0.024, "ndcg@10": 0.0},
        "held_out_users_vs_popularity": {"recall@10": {"difference": recall - 0.024, "ci": list(ci)}},
    }
    record = {
        "task": "jobs",
        "data": {"n_users": users},
        "privacy": privacy,
        "metrics": {"top10": recall, "ranking": ranking},
        "curve": [{"clients": 50}],
    }
    (path / "record.json").write_text(json.dumps(record))


def test_for_recommenders_the_table_names_where_dp_beats_popularity_with_its_ci(tmp_path):
    plot = _plot_module()
    # 30,000: better than popularity but the CI reaches 0; 100,000: the CI is above 0
    for users, dp, ci in ((30000, 0.030, (-0.001, 0.012)), (100000, 0.040, (0.010, 0.022))):
        _ranking_record(tmp_path / str(users) / "0", users, "none", 0.07, (0.04, 0.05))
        _ranking_record(tmp_path / str(users) / "1", users, "dpfedavg", dp, ci)
    text = plot.table(plot.collect(tmp_path))
    assert "| users | clients/round | FedAvg recall@10 |" in text
    assert "| 30,000 | 50 | 0.070 | — | 0.030 | — | +0.006 [-0.001, +0.012] | 0.024 |" in text
    assert "beats popularity (CI above 0) from **100,000 users**" in text
    plot.plot(plot.collect(tmp_path), tmp_path / "utility.png")
    assert (tmp_path / "utility.png").stat().st_size > 1000
