"""The matched workload (issue 17) on pfl-research (``pfl`` 0.6, PyTorch backend); prints one JSON line.

Runs inside ``.venv-bench`` (``make bench-peers-setup``), not the project's venv: pfl 0.6 pins
dp-accounting < 0.6 and this project needs 0.6. So it must not import ``sandbox``; the users,
arrays and model come from ``benchmarks.peer_workload`` (numpy and torch only).
``benchmarks.peers`` runs it as ``.venv-bench/bin/python -m benchmarks.pfl_run`` from the
repository root.

The set-up follows pfl-research's own benchmarks (benchmarks/image_classification/pytorch/train.py):
a ``FederatedDataset`` of the 2,000 users, ``PyTorchModel`` with a central SGD optimizer at lr 1
(FedAvg's server step), ``FederatedAveraging`` with ``NNTrainHyperParams(local_num_epochs=1,
local_batch_size=16, local_learning_rate=0.1)``, ``SimulatedBackend`` with ``WeightByUser``
(DP-FedAvg averages clipped updates unweighted) and ``CentrallyAppliedPrivacyMechanism(
GaussianMechanism(clipping_bound=1, relative_noise_stddev=1))``: each user's update clipped
to C = 1 and the cohort's sum noised with std z·C = 1, then divided by the cohort's weight
(100). A callback stamps the end of every central iteration; iterations 2..10 are timed.

Differences from the in-process engine, none avoidable within pfl's API: the cohort has a
fixed size of 100 (not Poisson at q = 0.05); users are drawn by pfl's ``minimize_reuse``
sampler over a seeded permutation of the users (100 distinct users a round, none twice in 10
rounds; pfl's recommended sampler); pfl does not shuffle a user's rows within its epoch.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from importlib.metadata import version

import numpy as np
import torch
from pfl.aggregate.simulate import SimulatedBackend
from pfl.aggregate.weighting import WeightByUser
from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
from pfl.callback.base import TrainingProcessCallback
from pfl.data.dataset import Dataset
from pfl.data.federated_dataset import FederatedDataset
from pfl.data.sampling import get_user_sampler
from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
from pfl.metrics import Metrics, Weighted
from pfl.model.pytorch import PyTorchModel
from pfl.privacy import CentrallyAppliedPrivacyMechanism, GaussianMechanism
from torch import nn

from benchmarks.peer_workload import (
    BATCH,
    CLIP,
    COHORT,
    LOCAL_LR,
    N_USERS,
    NOISE,
    ROUNDS,
    BagModel,
    n_parameters,
    user_rows,
    workload_arrays,
)


def _loss(self: BagModel, tokens: torch.Tensor, labels: torch.Tensor, eval: bool = False) -> torch.Tensor:
    self.eval() if eval else self.train()
    return nn.functional.cross_entropy(self(tokens), labels)


@torch.no_grad()
def _metrics(self: BagModel, tokens: torch.Tensor, labels: torch.Tensor, eval: bool = True) -> dict:
    self.eval() if eval else self.train()
    logits = self(tokens)
    loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
    correct = (logits.argmax(-1) == labels).sum()
    return {"loss": Weighted(float(loss), len(labels)), "accuracy": Weighted(float(correct), len(labels))}


class PflBagModel(BagModel):
    """The matched model with the ``loss`` and ``metrics`` that ``PyTorchModel`` asks of a module."""

    loss = _loss
    metrics = _metrics


class IterationStamps(TrainingProcessCallback):
    """``time.perf_counter()`` at the end of each central iteration, and the users (their sizes) trained in it."""

    def __init__(self, sampled: list[int]):
        self.stamps: list[float] = []
        self.cohorts: list[list[int]] = []
        self._sampled = sampled

    def after_central_iteration(self, aggregate_metrics, model, *, central_iteration: int):
        self.stamps.append(time.perf_counter())
        self.cohorts.append(list(self._sampled))
        self._sampled.clear()
        return False, Metrics()


def run(seed: int = 0, rounds: int = ROUNDS) -> dict:
    np.random.seed(seed)
    arrays = workload_arrays(seed)
    sampled: list[int] = []

    def make_dataset(user: int) -> Dataset:
        tokens, labels = user_rows(arrays, user)
        sampled.append(len(labels))
        return Dataset(raw_data=[tokens, labels], user_id=user)

    users = [int(u) for u in np.random.default_rng(seed).permutation(N_USERS)]
    train = FederatedDataset(make_dataset, get_user_sampler("minimize_reuse", users))
    torch.manual_seed(seed)  # the same initial parameters as peer_workload.new_model(seed)
    module = PflBagModel()
    model = PyTorchModel(
        model=module,
        local_optimizer_create=torch.optim.SGD,
        central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0),
    )
    mechanism = GaussianMechanism(clipping_bound=CLIP, relative_noise_stddev=NOISE)  # noise std z·C on the sum
    backend = SimulatedBackend(
        training_data=train, val_data=None, postprocessors=[WeightByUser(), CentrallyAppliedPrivacyMechanism(mechanism)]
    )
    stamps = IterationStamps(sampled)
    FederatedAveraging().run(
        algorithm_params=NNAlgorithmParams(
            central_num_iterations=rounds,
            evaluation_frequency=rounds + 1,  # iteration 0 only (untimed): pfl evaluates when iteration % freq == 0
            train_cohort_size=COHORT,
            val_cohort_size=None,
        ),
        backend=backend,
        model=model,
        model_train_params=NNTrainHyperParams(local_num_epochs=1, local_batch_size=BATCH, local_learning_rate=LOCAL_LR),
        model_eval_params=NNEvalHyperParams(local_batch_size=BATCH),
        callbacks=[stamps],
        send_metrics_to_platform=False,  # pfl's default platform would print every iteration's metrics to stdout
    )
    ts = stamps.stamps
    return {
        "engine": "pfl",
        "pfl_version": version("pfl"),
        "torch": torch.__version__,
        "seconds_per_round": (ts[-1] - ts[0]) / (len(ts) - 1),
        "rounds": len(ts),
        "mean_cohort": float(np.mean([len(c) for c in stamps.cohorts[1:]])),  # the timed iterations
        "mean_examples": float(np.mean([sum(c) for c in stamps.cohorts[1:]])),
        "n_parameters": n_parameters(module),
        "n_examples": int(arrays[2][-1]),
        "noise_std_on_sum": mechanism.relative_noise_stddev * CLIP,
    }


def main() -> None:
    # pfl's add_gaussian_noise copy-constructs the summed statistics with torch.tensor(tensor)
    warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    result = run(seed)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
