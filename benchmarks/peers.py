"""`make bench`: the matched federated workload (issue 17) on the in-process engine and on two peers.

In one run, alternating over repeats (the machine is shared and noisy: medians, and ratios of
runs made side by side): the project's in-process engine (``benchmarks.matched``), pfl-research
(``benchmarks.pfl_run`` in ``.venv-bench``, a subprocess; skipped with a note when that venv is
absent: ``make bench-peers-setup``) and Flower's own simulation with its DP strategy
(``benchmarks.flower_run``). Each times rounds 2..10 of 10 (start-up excluded) and prints
seconds per round; then the ratios pfl / in-process and Flower / in-process.

The same workload, checked here: the peers' arrays are those of ``benchmarks.matched`` (compared
element by element), the same model size (parameter counts printed), cohorts of about 100
(mean cohort and examples per timed round printed), the same rounds. What differs, by the
engines' own APIs: the in-process engine samples Poisson cohorts at q = 0.05 (secret sampling,
so its mean cohort is shown from a separate draw of its own sampler); Flower's FedAvg samples a
fixed 5% of the nodes (100) without replacement; pfl's cohorts are a fixed 100 users
(``minimize_reuse`` sampler over a seeded permutation: no user twice in the 10 rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

import numpy as np
from torch.nn.utils import parameters_to_vector

from benchmarks import flower_run, matched, peer_workload
from sandbox.federated.server import DPFedAvgSettings, FederatedServer
from sandbox.privacy import PrivacyBook

REPO = Path(__file__).resolve().parent.parent
BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"
REPEATS = 3


def same_arrays() -> bool:
    """The peers' copy of the generator gives ``benchmarks.matched``'s arrays, element by element."""
    ours, theirs = matched.workload_arrays(), peer_workload.workload_arrays()
    return all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def inprocess_cohorts(arrays, rounds: int = matched.ROUNDS) -> tuple[float, float]:
    """(mean cohort, mean examples a round) over rounds 2..rounds of the in-process server's own sampler.

    A separate draw from the timed run's: ``FederatedServer`` built as ``benchmarks.matched`` builds it,
    its ``next_round`` called ``rounds`` times (Poisson at q = 0.05; secret under secure noise).
    """
    _, _, offsets = arrays
    counts = np.diff(offsets)
    server = FederatedServer(
        params=parameters_to_vector(matched.new_model().parameters()).detach(),
        n_clients=matched.N_USERS,
        cfg=matched.federation(rounds),
        dp=DPFedAvgSettings(noise_multiplier=matched.NOISE, clip_norm=matched.CLIP),
        book=PrivacyBook(unit="user", delta=matched.DELTA, accountant="rdp"),
        seed=0,
    )
    plans = [server.next_round() for _ in range(rounds)][1:]
    return float(np.mean([len(p.clients) for p in plans])), float(np.mean([counts[p.clients].sum() for p in plans]))


def run_pfl(seed: int = 0) -> dict | None:
    """pfl-research's run (a subprocess in ``.venv-bench``), or None when that venv is absent."""
    if not BENCH_PYTHON.exists():
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO)  # benchmarks.peer_workload; sandbox is not installed there
    proc = subprocess.run(
        [str(BENCH_PYTHON), "-m", "benchmarks.pfl_run", str(seed)], cwd=REPO, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks.pfl_run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_inprocess(arrays) -> dict:
    seconds, eps = matched.inprocess_seconds_per_round(arrays)
    return {"engine": "in-process", "seconds_per_round": seconds, "epsilon": eps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    arrays = matched.workload_arrays()
    counts = np.diff(arrays[2])
    print(
        f"matched workload (issue 17) against the peers: {matched.N_USERS} users, {len(arrays[1]):,} examples "
        f"(per user: mean {counts.mean():.2f}, max {counts.max()}), DP-FedAvg z={matched.NOISE}, C={matched.CLIP}, "
        f"{matched.ROUNDS} rounds, rounds 2–{matched.ROUNDS} timed"
    )
    print(f"  peers' arrays identical to benchmarks.matched's: {same_arrays()}")
    cohort, examples = inprocess_cohorts(arrays)
    print(
        f"  parameters: in-process {matched.n_parameters():,}; peers' model "
        f"{peer_workload.n_parameters(peer_workload.new_model()):,}"
    )
    print(
        f"  in-process cohort (its sampler, q={matched.SAMPLE_RATE}): mean {cohort:.1f} clients, {examples:.0f} examples a round"
    )
    if not BENCH_PYTHON.exists():
        print(
            f"  NOTE: {BENCH_PYTHON.relative_to(REPO)} is absent: pfl-research skipped (make bench-peers-setup builds it)"
        )

    runs: dict[str, list[dict]] = {"in-process": [], "pfl": [], "flower": []}
    for repeat in range(args.repeats):
        order = ["in-process", "pfl", "flower"]
        order = order[repeat % 3 :] + order[: repeat % 3]  # alternate who goes first
        for engine in order:
            if engine == "in-process":
                result = run_inprocess(arrays)
                detail = f"ε={result['epsilon']:.3f}"
            elif engine == "pfl":
                result = run_pfl(seed=repeat)
                if result is None:
                    continue
                detail = (
                    f"cohort {result['mean_cohort']:.1f}, {result['mean_examples']:.0f} examples a round, "
                    f"{result['n_parameters']:,} parameters, {result['rounds']} rounds, pfl {result['pfl_version']}"
                )
            else:
                result = flower_run.run(seed=repeat)
                detail = (
                    f"cohort {result['mean_cohort']:.1f}, {result['mean_examples']:.0f} examples a round, "
                    f"{result['n_parameters']:,} parameters, {result['rounds']} rounds, "
                    f"start-up and round 1 {result['startup_seconds']:.1f} s, shut-down {result['shutdown_seconds']:.1f} s (untimed)"
                )
            runs[engine].append(result)
            print(f"  [{repeat + 1}/{args.repeats}] {engine:>10}: {result['seconds_per_round']:.4f} s/round ({detail})")

    medians = {e: statistics.median(r["seconds_per_round"] for r in rs) for e, rs in runs.items() if rs}
    print("seconds per round (median of repeats): " + ", ".join(f"{e} {s:.4f}" for e, s in medians.items()))
    base = [r["seconds_per_round"] for r in runs["in-process"]]
    for engine, label in (("pfl", "pfl-research"), ("flower", "Flower simulation")):
        if not runs[engine]:
            print(f"  {label} / in-process: skipped")
            continue
        side_by_side = [r["seconds_per_round"] / b for r, b in zip(runs[engine], base)]
        print(
            f"  {label} / in-process: {statistics.median(side_by_side):.1f}× (median of per-repeat ratios; "
            f"{', '.join(f'{x:.1f}' for x in side_by_side)}); ratio of medians {medians[engine] / medians['in-process']:.1f}×"
        )


if __name__ == "__main__":
    main()
