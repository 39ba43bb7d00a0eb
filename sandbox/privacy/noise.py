"""Where the DP noise comes from: ``privacy.noise_source``, the one helper every mechanism uses.

``secure`` (the default). Each noise generator is a ``torch.Generator`` whose whole state is
drawn from the operating system's CSPRNG (``os.urandom``) when it is made: once per run for
central DP-SGD and for the federated server (DP-FedAvg's update noise and adaptive clipping's
count noise), and once per client update on the client under client-level DP-SGD. Its state
is never written anywhere (not in the record, a log or a message), so the noise cannot be
regenerated from anything a run leaves behind.

What this is, exactly. torch's CPU generator is MT19937. ``manual_seed`` keeps only the low
32 bits of a seed (``manual_seed(s)`` and ``manual_seed(s + 2**32)`` draw the same numbers),
so a generator seeded with ``secrets.randbits(63)`` would hold only 2**32 possible noise
streams, few enough to try them all. This module therefore fills all 624 32-bit words of the
state from ``os.urandom`` (19 968 bits) through ``Generator.set_state``. What protects is the
secrecy of that state, nothing else.

What it does not stop. MT19937 is not a cryptographic generator: its output is linear over
GF(2) in its state, so enough known output bits (about 20 000) determine the state. The
mechanisms release Gaussian samples, not raw outputs, but some coordinates carry pure noise
(embedding rows no client touched; every client sees each round's global model, so it sees
one round's noise on them to float32 precision), and Box-Muller can be inverted to recover
high bits of the uniforms behind them. An adversary who does that could in principle solve
for the state and regenerate the rest of the noise. This module does not rule that out; it
rules out regenerating the noise from the record, the seed or a message. Closing the gap
needs Gaussian noise drawn from a CSPRNG stream (e.g. uniforms from ``os.urandom``
transformed in float64), which the torch-generator interface used by Opacus and by
``federated.aggregate.gaussian_noise`` does not offer.

What we do not use, and why. Opacus' ``secure_mode`` draws from ``torchcsprng`` (a CSPRNG
generator for torch) and also guards against floating-point attacks on the Gaussian sampler
(the attacks of arXiv:2107.10138 and arXiv:2112.05307, as Opacus cites them).
``torchcsprng`` is not installed here and cannot be: its last release (0.2.1, 2021) was built
for torch 1.8, and there is no distribution of it for this Python and torch (``pip download
torchcsprng`` finds none). So ``secure`` means "a secret full-entropy state, not replayable",
not "a CSPRNG stream with floating-point hardening". A deployment that needs both should use
a CSPRNG-backed sampler.

``seeded`` (research mode). ``torch.Generator().manual_seed(seeded_from)``, where
``seeded_from`` is derived from the run's recorded ``seed``: runs replay bit for bit, and
anyone holding the record can regenerate the noise and subtract it. The model is then *not*
differentially private against them, and the record says so (``sandbox.record``).

The mechanism's sampling is secret too. The accountants' amplification by subsampling assumes
the adversary does not know which units a step sampled: whoever could replay the sample from
the record's seed knows, for a target, which steps included it, and against them each of
those steps is a Gaussian mechanism *without* subsampling, a much weaker guarantee than the
reported ε. So under ``secure`` the Poisson sampling of the DP mechanisms is drawn from the
OS CSPRNG as well (``sampling_generator``, ``sampling_rng``): central DP-SGD's Poisson batches,
DP-FedAvg's client sampling and each client's example sampling under client-level DP-SGD
(drawn on the client, never from a seed the server sends). Under ``seeded`` both replay.
What stays seeded in both modes: the user split, initialisation, non-private shuffling and
local (non-DP) training order, so a run is deterministic except for the DP mechanism's own
randomness (its noise and its sample). Those seeded parts do not depend on the data beyond
what the mechanism's sensitivity already covers (a client's whole clipped update).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from sandbox.config.schema import NOISE_SOURCES  # noqa: F401  (re-exported)

SEEDED_NOISE_WARNING = (
    "seeded noise (research mode): anyone holding this record can regenerate the DP noise "
    "and subtract it; this model is NOT differentially private against them"
)

_MT_WORDS = 624  # MT19937 state: 624 32-bit words
_STATE_BYTES = 5056  # torch's CPUGeneratorImplState (legacy pod + next float normal sample)
_WORDS_OFFSET = 24  # int64 initial seed, int left, int seeded, uint64 next; then uint64 state[624]


def _os_entropy(n_bytes: int) -> bytes:
    """Fresh bytes from the OS CSPRNG. The only source of a secure generator's state (tests patch it)."""
    return os.urandom(n_bytes)


def secure_generator() -> torch.Generator:
    """A CPU ``torch.Generator`` whose whole MT19937 state comes from ``os.urandom`` (never stored).

    Its ``initial_seed()`` is 0 and means nothing: the state was set, not seeded.
    """
    generator = torch.Generator().manual_seed(0)  # a valid state to overwrite (normal caches empty)
    state = generator.get_state().numpy().copy()
    words = np.frombuffer(state[_WORDS_OFFSET : _WORDS_OFFSET + 8 * _MT_WORDS].tobytes(), dtype=np.uint64)
    # The layout check: after manual_seed(0) the words are MT19937's initialisation of seed 0.
    if state.size != _STATE_BYTES or words[0] != 0 or words[1] != 1 or words.max() >= 2**32:
        raise RuntimeError(
            f"torch {torch.__version__}: unexpected CPU generator state layout; "
            "sandbox.privacy.noise cannot fill it from os.urandom (no secure noise)"
        )
    fresh = np.frombuffer(_os_entropy(4 * _MT_WORDS), dtype=np.uint32).astype(np.uint64)
    state[_WORDS_OFFSET : _WORDS_OFFSET + 8 * _MT_WORDS] = np.frombuffer(fresh.tobytes(), dtype=np.uint8)
    generator.set_state(torch.from_numpy(state))
    return generator


def noise_generator(source: str, seeded_from: int | None) -> torch.Generator:
    """The generator one mechanism draws its DP noise from.

    ``secure``: ``secure_generator()``, and ``seeded_from`` is ignored (callers pass it in
    both modes so that switching the mode changes nothing else). ``seeded``:
    ``torch.Generator().manual_seed(seeded_from)``, replayable from the record.
    """
    if source == "secure":
        return secure_generator()
    if source == "seeded":
        if seeded_from is None:
            raise ValueError("seeded noise needs the seed it is replayed from")
        return torch.Generator().manual_seed(int(seeded_from))
    raise ValueError(f"privacy.noise_source must be one of {NOISE_SOURCES}, got {source!r}")


def sampling_generator(source: str, seeded: torch.Generator) -> torch.Generator:
    """The torch generator a DP mechanism's Poisson sampling draws from: a fresh secret one
    (``secure``) or ``seeded``, the run's replayable stream (research mode)."""
    if source == "secure":
        return secure_generator()
    if source == "seeded":
        return seeded
    raise ValueError(f"privacy.noise_source must be one of {NOISE_SOURCES}, got {source!r}")


def sampling_rng(source: str, seeded_from) -> np.random.Generator:
    """The NumPy generator a DP mechanism's Poisson sampling draws from: PCG64 from 256 bits of
    ``os.urandom`` (``secure``), or from ``seeded_from`` (a seed or SeedSequence, research mode)."""
    if source == "secure":
        return np.random.default_rng(np.random.SeedSequence(int.from_bytes(_os_entropy(32), "little")))
    if source == "seeded":
        return np.random.default_rng(seeded_from)
    raise ValueError(f"privacy.noise_source must be one of {NOISE_SOURCES}, got {source!r}")
