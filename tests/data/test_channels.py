"""Channel memberships from the message corpus: (workspace, name) identity, join time, held-out joins."""

from __future__ import annotations

import numpy as np
import pytest

from sandbox.data import Corpus, CorpusError
from sandbox.data.channels import channel_memberships, hold_out_latest


def _corpus() -> Corpus:
    # users 0, 1 in workspace 0; user 2 in workspace 1 (which also has a "#general")
    return Corpus(
        workspace_ids=np.array(["ws-a", "ws-b"], dtype=object),
        workspace_opted_out=np.array([False, False]),
        user_ids=np.array(["u0", "u1", "u2"], dtype=object),
        user_workspace=np.array([0, 0, 1]),
        user_opted_out=np.array([False, False, False]),
        message_ids=np.array([f"m{i}" for i in range(7)], dtype=object),
        message_user=np.array([0, 0, 0, 0, 1, 2, 2]),
        channels=np.array(["#random", "#general", "#random", "#dev", "#general", "#general", "#ops"], dtype=object),
        timestamps=np.array([30, 10, 5, 40, 7, 1, 2]),
        texts=np.array(["t"] * 7, dtype=object),
        reactions=((),) * 7,
    )


def test_a_channel_is_a_workspace_and_a_name_and_a_join_is_the_first_message():
    m = channel_memberships(_corpus(), users=np.array([0, 1, 2]))
    keys = m.channel_keys()
    assert sorted(keys) == keys and set(keys) == {"0/#dev", "0/#general", "0/#random", "1/#general", "1/#ops"}
    joined = {(int(u), keys[c]): int(t) for u, c, t in zip(m.user, m.channel, m.joined)}
    assert joined == {
        (0, "0/#random"): 5,
        (0, "0/#general"): 10,
        (0, "0/#dev"): 40,
        (1, "0/#general"): 7,
        (2, "1/#general"): 1,
        (2, "1/#ops"): 2,
    }
    assert m.user.tolist() == [0, 0, 0, 1, 2, 2]  # grouped by user, then by join time
    assert [keys[c] for c in m.channel[:3]] == ["0/#random", "0/#general", "0/#dev"]


def test_only_the_given_users_appear():
    m = channel_memberships(_corpus(), users=np.array([1]))
    assert m.user.tolist() == [1] and m.channel_keys() == ["0/#general"]
    with pytest.raises(CorpusError, match="out of range"):
        channel_memberships(_corpus(), users=np.array([3]))


def test_the_latest_joins_are_held_out_and_every_user_keeps_one():
    m = channel_memberships(_corpus(), users=np.array([0, 1, 2]))
    train, held = hold_out_latest(m, fraction=0.5)
    keys = m.channel_keys()
    assert [(int(u), keys[c]) for u, c in zip(m.user[held], m.channel[held])] == [(0, "0/#dev"), (2, "1/#ops")]
    assert (train ^ held).all() and set(m.user[train]) == {0, 1, 2}  # user 1's only channel stays in training
    with pytest.raises(ValueError, match="fraction"):
        hold_out_latest(m, fraction=1.0)
