"""Small corpora shared by the data tests (generated once per session)."""

import pytest

from sandbox.data import SyntheticConfig, generate_corpus

SMALL = SyntheticConfig(
    seed=7, n_workspaces=20, n_users=400, n_canaries=4, canary_users=2, canary_repeats=3, n_fresh_canaries=20
)


@pytest.fixture(scope="session")
def small_config() -> SyntheticConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_generated():
    return generate_corpus(SMALL)


@pytest.fixture(scope="session")
def small_corpus(small_generated):
    return small_generated[0]


@pytest.fixture(scope="session")
def small_manifest(small_generated):
    return small_generated[1]
