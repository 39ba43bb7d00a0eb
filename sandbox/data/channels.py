"""Channel-suggestion data from the message corpus: which channels each user joined, per workspace.

A channel is a (workspace, channel name) pair: ``#general`` of one workspace is not
``#general`` of another. A user has joined a channel when they posted in it; the time they
joined is their first message there. Suggestions are within the user's own workspace, so the
items a user can be shown are that workspace's channels.

Built from a ``UserSplit``'s users only, so opted-out users never appear (consent is enforced
where data enters, as for the other tasks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.data.schema import Corpus, CorpusError


@dataclass(frozen=True)
class ChannelMemberships:
    """Channels [C] and (user, channel) memberships [P], sorted by user then join time."""

    channel_workspace: np.ndarray  # [C] workspace index of each channel
    channel_names: np.ndarray  # [C] the channel's name in its workspace ("#general")
    user: np.ndarray  # [P] corpus user index
    channel: np.ndarray  # [P] channel index
    joined: np.ndarray  # [P] timestamp of the user's first message in the channel

    @property
    def n_channels(self) -> int:
        return len(self.channel_workspace)

    def channel_keys(self) -> list[str]:
        return [f"{w}/{name}" for w, name in zip(self.channel_workspace, self.channel_names)]


def channel_memberships(corpus: Corpus, *, users: np.ndarray) -> ChannelMemberships:
    """Memberships of ``users`` (corpus user indices, e.g. a split's train + test users)."""
    users = np.asarray(users, dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= corpus.n_users):
        raise CorpusError(f"channel memberships: user index out of range [0, {corpus.n_users})")
    keep = np.isin(corpus.message_user, users)
    user = corpus.message_user[keep]
    workspace = corpus.user_workspace[user]
    names = corpus.channels[keep].astype(str)
    time = corpus.timestamps[keep]
    # channel identity: (workspace, name), numbered in sorted order
    keys = np.char.add(np.char.add(workspace.astype(str), "/"), names)  # "/" cannot be in an index
    channel_keys, channel = np.unique(keys, return_inverse=True)
    channel_workspace = np.array([int(k.split("/", 1)[0]) for k in channel_keys], dtype=np.int64)
    channel_names = np.array([k.split("/", 1)[1] for k in channel_keys], dtype=object)
    # first message per (user, channel)
    order = np.lexsort((time, channel, user))
    user, channel, time = user[order], channel[order], time[order]
    first = np.ones(len(user), dtype=bool)
    first[1:] = (user[1:] != user[:-1]) | (channel[1:] != channel[:-1])
    user, channel, joined = user[first], channel[first], time[first]
    by_time = np.lexsort((channel, joined, user))
    return ChannelMemberships(
        channel_workspace=channel_workspace,
        channel_names=channel_names,
        user=user[by_time],
        channel=channel[by_time],
        joined=joined[by_time],
    )


def hold_out_latest(
    memberships: ChannelMemberships, *, fraction: float, min_train: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, held out) over memberships: each user's latest-joined ``fraction``.

    At least ``min_train`` memberships per user stay in training (a user with one channel
    has nothing held out). Later joins are what a suggestion would have predicted.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    user = memberships.user
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    counts = np.diff(np.r_[starts, len(user)])
    position = np.arange(len(user)) - np.repeat(starts, counts)  # 0 = earliest join
    n_held = np.minimum(np.floor(fraction * counts).astype(np.int64), np.maximum(counts - min_train, 0))
    held = position >= np.repeat(counts - n_held, counts)
    return ~held, held
