"""`python -m sandbox.compare SWEEP_DIR`: Pareto rule, reading sweeps (skipped runs, mixed tasks),
the files it writes, bad input, and one real tiny Hydra sweep end to end."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox.compare import Objectives, RecordError, dominates, pareto_front, point_from_record, read_frontier
from sandbox.compare.__main__ import OUTPUTS, main
from sandbox.compare.frontier import markdown_table
from sandbox.compare.plots import attack_figure, utility_figure
from sandbox.compare.sweep import BASIC_SWEEPER
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
INF = math.inf


# --- hand-made records, shaped as sandbox/run.py, audit/harness.py and audit/recsys.py write them ---


def emoji_record(
    eps,
    top5,
    *,
    auc=None,
    tpr=0.01,
    lb=0.0,
    one_run=None,
    status="completed",
    result="measured",
    unit="user",
    mode="federated",
):
    mechanism = "none" if eps is None else ("dpfedavg" if mode == "federated" else "dpsgd")
    record = {
        "task": "emoji",
        "mode": mode,
        "status": status,
        "privacy": {
            "mechanism": mechanism,
            "unit": unit,
            "epsilon": eps,
            "delta": None if eps is None else 1e-5,
            "accountant": None if eps is None else "rdp",
        },
        "metrics": {
            "top1": top5 / 2,
            "top5": top5,
            "baseline": {"top1": 0.118, "top5": 0.357},
            "split": "held-out users",
        },
    }
    if auc is not None:
        record["audit"] = {
            "attack": "loss",
            "level": "user",
            "threat": "scores",
            "auc": auc,
            "tpr_at_1pct_fpr": tpr,
            "eps_lower_bound": lb,
            "one_run_eps_lower_bound": one_run,
            "result": result,
            "reason": "the reason",
        }
    return record


def jobs_record(eps, recall, *, auc=None, tpr=0.01, gap=0.02):
    ranking = {
        "held_out_users": {"recall@10": recall, "ndcg@10": recall / 2},
        "held_out_users_popularity": {"recall@10": 0.025, "ndcg@10": 0.015},
        "training_users": {"recall@10": recall, "ndcg@10": recall / 2},
    }
    record = {
        "task": "jobs",
        "mode": "federated",
        "status": "completed",
        "privacy": {
            "mechanism": "none" if eps is None else "dpfedavg",
            "unit": "user",
            "epsilon": eps,
            "delta": None if eps is None else 1e-5,
            "accountant": None if eps is None else "rdp",
        },
        "metrics": {"top1": 0.05, "top10": 0.3, "baseline": {"top1": 0.03, "top10": 0.2}, "ranking": ranking},
    }
    if auc is not None:
        record["audit"] = {
            "attack": "suggestions",
            "level": "user",
            "threat": "top-10 list shown to the user",
            "result": "measured",
            "membership": {"auc": auc, "tpr_at_fpr": {"0.001": 0.0, "0.01": tpr}},
            "attribute": {
                "name": "seeking",
                "result": "measured",
                "members": {"advantage": 0.5},
                "non_members": {"advantage": 0.5 - gap},
                "gap": gap,
            },
        }
    return record


def write_sweep(root: Path, jobs: list[tuple[list[str], object]], *, planned: list[str] | None = None) -> Path:
    """A Hydra-multirun-shaped directory: ``{num}_{overrides}/.hydra/{overrides,hydra}.yaml`` and the
    record (a dict → record.json, a str → written as is, None → no record.json)."""
    root.mkdir(parents=True, exist_ok=True)
    for num, (overrides, record) in enumerate(jobs):
        job = root / f"{num}_{','.join(overrides)}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
        if isinstance(record, dict):
            (job / "record.json").write_text(json.dumps(record))
        elif isinstance(record, str):
            (job / "record.json").write_text(record)
    if planned is not None:
        (root / "multirun.yaml").write_text(
            yaml.safe_dump(
                {
                    "hydra": {
                        "sweeper": {"_target_": BASIC_SWEEPER, "max_batch_size": None, "params": None},
                        "overrides": {"hydra": [], "task": planned},
                    }
                }
            )
        )
    return root


def run_main(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def table_lines(markdown: str) -> list[str]:
    """Data rows of the frontier table (not the header or the separator)."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [line for line in lines if not line.startswith("| # |")]


# --- the Pareto rule on hand-made points ---


def test_a_point_worse_on_every_criterion_is_dominated():
    a, b = Objectives(4.0, 0.50, 0.60), Objectives(1.0, 0.60, 0.55)
    assert dominates(b, a) and not dominates(a, b)
    front = pareto_front([a, b])
    assert [r.optimal for r in front] == [False, True] and front[0].dominated_by == 1


def test_exact_ties_do_not_dominate_and_both_stay_optimal():
    a = Objectives(4.0, 0.5, 0.55)
    assert not dominates(a, Objectives(4.0, 0.5, 0.55))
    assert [r.optimal for r in pareto_front([a, Objectives(4.0, 0.5, 0.55)])] == [True, True]


@pytest.mark.parametrize(
    "better", [Objectives(4.0, 0.5, 0.54), Objectives(4.0, 0.51, 0.55), Objectives(3.9, 0.5, 0.55)]
)
def test_a_tie_on_two_criteria_and_strictly_better_on_the_third_dominates(better):
    assert dominates(better, Objectives(4.0, 0.5, 0.55))
    assert not dominates(Objectives(4.0, 0.5, 0.55), better)


def test_trade_offs_are_all_optimal():
    points = [Objectives(1.0, 0.40, 0.50), Objectives(4.0, 0.52, 0.53), Objectives(8.0, 0.54, 0.56)]
    assert all(r.optimal and r.dominated_by is None for r in pareto_front(points))


def test_non_private_runs_have_infinite_epsilon():
    private, best_utility = Objectives(4.0, 0.50, 0.55), Objectives(INF, 0.70, 0.80)
    worse_non_private = Objectives(INF, 0.50, 0.60)  # no better than the private run on anything
    tied_non_private = Objectives(INF, 0.70, 0.80)
    front = pareto_front([private, best_utility, worse_non_private, tied_non_private])
    assert [r.optimal for r in front] == [True, True, False, True]
    assert front[2].dominated_by == 0  # ∞ ≥ 4 with equal utility and a higher attack
    # ∞ ≤ ∞ holds: two non-private runs are compared on utility and attack
    assert dominates(Objectives(INF, 0.70, 0.60), worse_non_private)
    assert not dominates(best_utility, worse_non_private)  # better utility, worse attack: a trade-off


def test_a_run_without_audit_is_compared_on_epsilon_and_utility_only():
    unaudited, audited = Objectives(1.0, 0.60), Objectives(4.0, 0.50, 0.10)
    # better ε and utility dominate even against a lower attack, since there is none to compare with
    assert dominates(unaudited, audited)
    front = pareto_front([unaudited, audited, Objectives(1.0, 0.60, 0.99)])
    assert [r.optimal for r in front] == [True, False, True]  # the tie on (ε, utility) dominates nobody
    assert [r.with_attack for r in front] == [False, True, True]


@pytest.mark.parametrize(
    "bad",
    [
        dict(epsilon=float("nan"), utility=0.5),
        dict(epsilon=-1.0, utility=0.5),
        dict(epsilon=1.0, utility=float("inf")),
        dict(epsilon=1.0, utility=0.5, attack=float("nan")),
    ],
)
def test_objectives_refuse_values_that_cannot_be_ordered(bad):
    with pytest.raises(ValueError):
        Objectives(**bad)


# --- what is read off a record ---


def test_emoji_record_gives_top5_baseline_and_the_larger_lower_bound():
    p = point_from_record(emoji_record(4.0, 0.52, auc=0.56, tpr=0.03, lb=0.4, one_run=0.9))
    assert (p.utility_metric, p.utility, p.baseline, p.baseline_name) == ("top5", 0.52, 0.357, "most-frequent")
    assert (p.attack.auc, p.attack.tpr_at_1pct_fpr, p.attack.eps_lower_bound) == (0.56, 0.03, 0.9)
    assert p.private and p.epsilon == 4.0 and p.unit == "user"


def test_recommender_record_gives_recall_popularity_and_membership():
    p = point_from_record(jobs_record(None, 0.06, auc=0.53, tpr=0.007, gap=0.01))
    assert (p.utility_metric, p.utility, p.baseline, p.baseline_name) == ("recall@10", 0.06, 0.025, "popularity")
    assert (p.attack.auc, p.attack.tpr_at_1pct_fpr, p.attack.eps_lower_bound) == (0.53, 0.007, None)
    assert p.attack.attribute_gap == 0.01 and not p.private and p.epsilon == INF


def test_failed_and_malformed_records_give_a_reason():
    with pytest.raises(RecordError, match="status failed.*dp_bug"):
        point_from_record(emoji_record(1.0, 0.4, auc=0.9, status="failed", result="dp_bug"))
    broken = emoji_record(1.0, 0.4)
    del broken["metrics"]
    with pytest.raises(RecordError, match="'metrics'"):
        point_from_record(broken)


# --- reading sweeps ---


def test_mixed_tasks_are_ranked_within_their_own_task(tmp_path):
    root = write_sweep(
        tmp_path / "s",
        [
            (["task=emoji", "privacy.target_epsilon=1"], emoji_record(1.0, 0.40, auc=0.51)),
            (["task=emoji", "privacy.target_epsilon=8"], emoji_record(8.0, 0.54, auc=0.53)),
            (["task=emoji", "privacy=none"], emoji_record(None, 0.53, auc=0.60)),  # dominated by ε = 8
            (["task=jobs", "privacy.target_epsilon=1"], jobs_record(1.0, 0.022, auc=0.50)),
            (["task=jobs", "privacy.target_epsilon=8"], jobs_record(8.0, 0.020, auc=0.51)),  # dominated by ε = 1
            (["task=jobs", "privacy=none"], jobs_record(None, 0.060, auc=0.53)),
        ],
    )
    f = read_frontier(root)
    assert f.tasks == ["emoji", "jobs"] and not f.skipped
    got = {(r.point.task, r.point.epsilon): (r.pareto.optimal, r.pareto.dominated_by) for r in f.rows}
    index = {(r.point.task, r.point.epsilon): r.index for r in f.rows}
    assert got == {
        ("emoji", 1.0): (True, None),
        ("emoji", 8.0): (True, None),
        ("emoji", INF): (False, index["emoji", 8.0]),
        ("jobs", 1.0): (True, None),
        ("jobs", 8.0): (False, index["jobs", 1.0]),
        ("jobs", INF): (True, None),
    }
    # rows sorted by task then ε (non-private last), labelled with the varying overrides
    assert [r.label for r in f.rows] == [
        "0 task=emoji privacy.target_epsilon=1",
        "1 task=emoji privacy.target_epsilon=8",
        "2 task=emoji privacy=none",
        "3 task=jobs privacy.target_epsilon=1",
        "4 task=jobs privacy.target_epsilon=8",
        "5 task=jobs privacy=none",
    ]
    util, attack = utility_figure(f), attack_figure(f)
    assert [ax.get_ylabel() for ax in util.axes] == [
        "top-5 accuracy (held-out users)",
        "recall@10 (held-out users' held-out items)",
    ]
    assert [ax.get_title() for ax in util.axes] == ["emoji", "jobs"] and len(attack.axes) == 4
    for ax in util.axes:  # log ε axis, the sweep's ε values, non-private at the right edge
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert ax.get_xscale() == "log" and labels == ["1", "8", "∞\n(not private)"]
        assert ax.get_xticks()[-1] > 8 and ax.get_xlim()[1] > ax.get_xticks()[-1]


def test_attack_metric_choice_changes_the_frontier(tmp_path):
    # same ε and utility: only the attack decides; AUC and TPR at 1% FPR disagree on which is worse
    root = write_sweep(
        tmp_path / "s",
        [
            (["seed=0"], emoji_record(4.0, 0.5, auc=0.55, tpr=0.02)),
            (["seed=1"], emoji_record(4.0, 0.5, auc=0.60, tpr=0.01)),
        ],
    )
    by_auc = [r.pareto.optimal for r in read_frontier(root, attack_metric="auc").rows]
    by_tpr = [r.pareto.optimal for r in read_frontier(root, attack_metric="tpr").rows]
    assert sorted(zip(by_auc, by_tpr)) == [(False, True), (True, False)]


def test_runs_without_usable_records_are_skipped_with_the_reason(tmp_path):
    root = write_sweep(
        tmp_path / "s",
        [
            (["privacy.target_epsilon=1"], emoji_record(1.0, 0.40)),
            (["privacy.target_epsilon=2"], None),  # stopped before writing its record
            (["privacy.target_epsilon=4"], "{not json"),  # unreadable
            (["privacy.target_epsilon=8"], emoji_record(8.0, 0.5, auc=0.9, status="failed", result="dp_bug")),
        ],
        planned=["privacy.target_epsilon=1,2,4,8,16"],
    )  # job 4 never started
    f = read_frontier(root)
    assert [r.label for r in f.rows] == ["0 privacy.target_epsilon=1"]
    reasons = {s.label: s.reason for s in f.skipped}
    assert set(reasons) == {f"{n} privacy.target_epsilon={e}" for n, e in [(1, 2), (2, 4), (3, 8), (4, 16)]}
    assert reasons["1 privacy.target_epsilon=2"].startswith("no record.json")
    assert reasons["2 privacy.target_epsilon=4"].startswith("record.json unreadable")
    assert "dp_bug" in reasons["3 privacy.target_epsilon=8"]
    assert reasons["4 privacy.target_epsilon=16"].startswith("never started")


def test_sibling_sweeps_are_read_together_under_their_parent(tmp_path):
    write_sweep(
        tmp_path / "emoji",
        [(["privacy.target_epsilon=1"], emoji_record(1.0, 0.4, auc=0.5))],
        planned=["privacy.target_epsilon=1"],
    )
    write_sweep(
        tmp_path / "jobs",
        [(["privacy.target_epsilon=1"], jobs_record(1.0, 0.02, auc=0.5))],
        planned=["privacy.target_epsilon=1"],
    )
    f = read_frontier(tmp_path)
    assert [r.label for r in f.rows] == ["emoji/0", "jobs/0"] and not f.skipped
    assert f.common_overrides == {"emoji": ("privacy.target_epsilon=1",), "jobs": ("privacy.target_epsilon=1",)}
    assert all(r.pareto.optimal for r in f.rows)  # one run per task: each alone on its frontier


def test_a_single_run_directory_is_compared_as_one_run(tmp_path):
    run = tmp_path / "2026-11-27_emoji_federated_dpfedavg"
    run.mkdir()
    (run / "record.json").write_text(json.dumps(emoji_record(4.0, 0.5)))
    f = read_frontier(run)
    assert [(r.label, r.run_dir, r.pareto.optimal) for r in f.rows] == [(run.name, ".", True)]


def test_a_run_stopped_before_spending_any_budget_sits_at_epsilon_zero(tmp_path):
    root = write_sweep(
        tmp_path / "s",
        [
            (["seed=0"], emoji_record(0.0, 0.36, status="stopped_budget")),
            (["seed=1"], emoji_record(2.0, 0.45)),
            (["seed=2"], emoji_record(None, 0.6)),
        ],
    )
    f = read_frontier(root)
    assert [r.point.epsilon for r in f.rows] == [0.0, 2.0, INF] and all(r.pareto.optimal for r in f.rows)
    assert any("stopped_budget" in n for n in f.notes) and "(stopped_budget)" in markdown_table(f)
    ax = utility_figure(f).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2", "∞\n(not private)"]
    assert 0 < ax.get_xlim()[0] < ax.get_xticks()[0] < 2  # a log axis cannot show 0: drawn left of the rest


# --- the files ---


def test_outputs_csv_md_and_pngs(tmp_path, capsys):
    root = write_sweep(
        tmp_path / "s",
        [
            (["privacy=dpfedavg"], emoji_record(4.0, 0.52, auc=0.55, tpr=0.02, lb=0.3)),
            (["privacy=none"], emoji_record(None, 0.65)),  # no audit
            (["privacy=bad"], None),
        ],
    )
    code, out, err = run_main([root], capsys)
    assert code == 0 and err == ""
    md = (root / OUTPUTS["md"]).read_text(encoding="utf-8")
    assert len(table_lines(md)) == 2 and "## Skipped runs" in md and "privacy=bad" in md
    assert markdown_table(read_frontier(root)) in out  # prints the table
    rows = list(csv.DictReader(io.StringIO((root / OUTPUTS["csv"]).read_text(encoding="utf-8"))))
    assert len(rows) == 2
    by_private = {r["private"]: r for r in rows}
    assert float(by_private["False"]["epsilon"]) == INF and float(by_private["True"]["epsilon"]) == 4.0
    assert float(by_private["True"]["membership_auc"]) == 0.55 and by_private["False"]["membership_auc"] == ""
    assert by_private["False"]["pareto_basis"] == "epsilon, utility (no audit)"
    assert [r["pareto"] for r in rows] == ["True", "True"]  # ε against utility: a trade-off
    for name in (OUTPUTS["utility"], OUTPUTS["attack"]):
        assert (root / name).read_bytes().startswith(PNG)
    assert not list(root.glob(".*.tmp"))  # staged files renamed into place, none left behind


def test_missing_directory_exits_3_naming_it_without_traceback(tmp_path):
    missing = tmp_path / "no-such-sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.compare", str(missing)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and str(missing) in proc.stderr and "Traceback" not in proc.stderr
    assert not missing.exists()


@pytest.mark.parametrize("content", ["empty", "only_failed"])
def test_no_usable_record_exits_3_and_writes_nothing(tmp_path, capsys, content):
    root = tmp_path / "s"
    root.mkdir()
    if content == "only_failed":
        write_sweep(root, [(["seed=0"], None), (["seed=1"], "[]")])
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    code, out, err = run_main([root], capsys)
    assert code == 3 and out == "" and err.startswith("error: ") and str(root) in err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_an_unknown_attack_metric_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--attack-metric", "loss"])
    assert exc.value.code == 3 and "error: " in capsys.readouterr().err


# --- a real tiny Hydra sweep, compared ---


def test_a_real_tiny_sweep_none_and_dpfedavg_end_to_end(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    tiny = [*TINY, "mode=federated", "federation.rounds=2", "federation.sample_rate=0.2", "federation.eval_every=1"]
    short_dirs = (
        "hydra.job.config.override_dirname.exclude_keys=[" + ",".join(o.split("=")[0] for o in tiny) + "]"
    )  # job directories named by the swept keys only
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "-m",
            "privacy=none,dpfedavg",
            "++privacy.noise_multiplier=1.0",
            "++privacy.target_epsilon=null",
            "audit=loss",
            *tiny,
            f"hydra.sweep.dir={sweep}",
            short_dirs,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, out, err = run_main([sweep], capsys)
    assert code == 0, err
    f = read_frontier(sweep)
    assert not f.skipped and [r.label for r in f.rows] == ["1 privacy=dpfedavg", "0 privacy=none"]
    dp, plain = f.rows
    records = {r.label: json.loads((sweep / r.run_dir / "record.json").read_text()) for r in f.rows}
    assert dp.point.epsilon == records[dp.label]["privacy"]["epsilon"] > 0 and dp.point.unit == "user"
    assert not plain.point.private and plain.point.mechanism == "none"
    for r in f.rows:
        assert r.point.utility == records[r.label]["metrics"]["top5"]
        assert r.point.attack.auc == records[r.label]["audit"]["auc"]
    md = (sweep / OUTPUTS["md"]).read_text(encoding="utf-8")
    assert len(table_lines(md)) == 2 and "not private" in md and "1 privacy=dpfedavg" in out
    assert (sweep / OUTPUTS["utility"]).read_bytes().startswith(PNG)
