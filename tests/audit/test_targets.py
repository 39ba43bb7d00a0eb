"""Unit statistics: who is a member, and the white-box statistic (embedding rows that moved)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sandbox.audit.targets import MOVED_FLOOR, build_population, moved_rows_stats, unit_stats
from sandbox.config import resolve
from sandbox.prepare import Seeds, prepare
from sandbox.tasks import emoji
from tests.conftest import TINY, compose_config

CFG = emoji.EmojiTaskConfig(n_buckets=8, max_tokens=3, embedding_dim=2, hidden_dim=2)


def test_white_box_statistic_is_the_mean_log_movement_of_a_units_distinct_rows():
    torch.manual_seed(0)
    initial = emoji.EmojiModel(config=CFG, n_classes=2)
    model = emoji.EmojiModel(config=CFG, n_classes=2)
    model.load_state_dict(initial.state_dict())
    with torch.no_grad():
        model.embedding.weight[1] += torch.tensor([3.0, 4.0])  # moved by 5
        model.embedding.weight[2] += torch.tensor([0.0, 0.5])  # moved by 0.5
    tokens = torch.tensor([[1, 2, 0], [1, 1, 0], [3, 0, 0], [0, 0, 0]])  # 0 = padding
    stats = moved_rows_stats(model, initial, tokens, np.array([0, 0, 1, 2]), 3)
    # unit 0: rows {1, 2} (row 1 counted once); unit 1: row 3, unmoved; unit 2: no token at all
    expected = [(np.log(5 + MOVED_FLOOR) + np.log(0.5 + MOVED_FLOOR)) / 2, np.log(MOVED_FLOOR), np.log(MOVED_FLOOR)]
    np.testing.assert_allclose(stats.confidence, expected, rtol=1e-6)
    np.testing.assert_allclose(stats.probability, [2.75 + MOVED_FLOOR, MOVED_FLOOR, MOVED_FLOOR], rtol=1e-6)


def test_population_is_every_split_user_with_a_labelled_message_and_user_stats_average_them():
    cfg = resolve(compose_config([*TINY, "privacy=none"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    population = build_population(data, level="user")
    assert len(population.examples) == len(data.train) + len(data.test)
    owners = data.corpus.message_user[np.concatenate([data.train.message_index, data.test.message_index])]
    assert np.array_equal(population.users, np.unique(owners))
    model = data.new_model(cfg, Seeds.from_seed(cfg.seed))
    per_user = unit_stats(model, population, threat="scores", k=3)
    per_example = unit_stats(model, build_population(data, level="example"), threat="scores", k=3)
    first = population.example_user == 0
    assert per_user.confidence[0] == pytest.approx(per_example.confidence[first].mean(), rel=1e-6)
    with pytest.raises(ValueError, match="initialisation"):
        unit_stats(model, population, threat="whitebox", k=3)
