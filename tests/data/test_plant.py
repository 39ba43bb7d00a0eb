"""Canaries planted into a team's own corpus (sandbox/data/plant.py, `python -m sandbox.data plant`)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sandbox.config import ConfigError, resolve
from sandbox.data import CorpusError, load_corpus, write_corpus
from sandbox.data.__main__ import main
from sandbox.data.plant import plant_canaries, read_manifest
from tests.conftest import TINY, compose_config, run_in

ARGS = dict(n_canaries=6, repeats=3, users_per_canary=2, n_fresh=50, seed=4)


def test_canaries_go_into_consenting_hosts_and_the_rest_is_unchanged(small_corpus):
    planted, manifest = plant_canaries(small_corpus, **ARGS)
    assert planted.n_messages == small_corpus.n_messages + 6 * 2 * 3
    consenting = {str(u) for u, ok in zip(small_corpus.user_ids, small_corpus.user_consented()) if ok}
    hosts = [u for c in manifest.planted for u in c.user_ids]
    assert len(hosts) == len(set(hosts)) == 12 and set(hosts) <= consenting  # no user hosts two
    texts, users = planted.texts, planted.user_ids[planted.message_user]
    for canary in manifest.planted:
        written = Counter(str(u) for t, u in zip(texts, users) if t == canary.text)
        assert written == {u: 3 for u in canary.user_ids}  # repeats times in each host, nowhere else
    assert not set(manifest.fresh) & set(map(str, texts)) and len(manifest.fresh) == 50
    # the original messages, in their order, with every column as it was
    original = ~np.isin(planted.texts, [c.text for c in manifest.planted])
    for name in ("message_ids", "message_user", "channels", "timestamps", "texts"):
        assert np.array_equal(getattr(planted, name)[original], getattr(small_corpus, name)), name
    assert [r for r, o in zip(planted.reactions, original) if o] == list(small_corpus.reactions)
    # each canary copy sits after one of its host's messages, with that message's channel and time
    rows = np.flatnonzero(~original)
    for r in rows:
        before = r - 1
        while not original[before]:
            before -= 1
        assert planted.message_user[before] == planted.message_user[r]
        assert planted.channels[before] == planted.channels[r] and planted.timestamps[before] == planted.timestamps[r]
    labels = {r[0] for r in small_corpus.reactions if r}
    assert all(c.reaction in labels for c in manifest.planted)
    again, _ = plant_canaries(small_corpus, **ARGS)
    assert again.fingerprint() == planted.fingerprint()  # seeded
    assert plant_canaries(small_corpus, **{**ARGS, "seed": 5})[0].fingerprint() != planted.fingerprint()


def test_too_many_canaries_or_bad_counts_are_refused(small_corpus):
    with pytest.raises(ValueError, match="--canaries × --users"):
        plant_canaries(small_corpus, **{**ARGS, "n_canaries": 1000})
    with pytest.raises(ValueError, match="--repeats"):
        plant_canaries(small_corpus, **{**ARGS, "repeats": 0})


def test_the_cli_writes_the_copy_and_the_manifest_apart(tmp_path, small_corpus, capsys):
    write_corpus(small_corpus, tmp_path / "mine", fmt="jsonl")
    args = ["plant", str(tmp_path / "mine"), str(tmp_path / "planted"), "--canaries", "5", "--repeats", "2"]
    assert main(args) == 0
    assert "10 canary messages" in capsys.readouterr().out
    manifest_path = tmp_path / "planted.canaries.json"
    assert manifest_path.is_file() and not (tmp_path / "planted" / "canaries.json").exists()
    planted = load_corpus(tmp_path / "planted")
    manifest = read_manifest(manifest_path, planted)
    assert len(manifest.planted) == 5 and planted.n_messages == small_corpus.n_messages + 10
    assert load_corpus(tmp_path / "mine").fingerprint() == small_corpus.fingerprint()  # the original untouched
    # refused, nothing written: a manifest inside the copy; an existing manifest
    inside = ["plant", str(tmp_path / "mine"), str(tmp_path / "p2"), "--manifest", str(tmp_path / "p2" / "m.json")]
    assert main(inside) == 3 and not (tmp_path / "p2").exists()
    assert main(["plant", str(tmp_path / "mine"), str(tmp_path / "planted")]) == 3  # its manifest exists
    assert "never overwritten" in capsys.readouterr().err
    # a manifest of another corpus
    with pytest.raises(CorpusError, match="is not a user of the corpus|in no message"):
        read_manifest(manifest_path, small_corpus)


def test_audit_canary_on_files_without_a_manifest_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.manifest.*sandbox\.data plant"):
        resolve(compose_config(["data=files", f"data.path={tmp_path}", "audit=canary"]))
    with pytest.raises(ConfigError, match="data.n_canaries"):
        resolve(compose_config(["audit=canary", "data.n_canaries=0"]))


@pytest.mark.e2e
def test_the_canary_audit_runs_on_a_planted_corpus_of_files(tmp_path, small_corpus):
    write_corpus(small_corpus, tmp_path / "mine", fmt="csv")
    assert main(["plant", str(tmp_path / "mine"), str(tmp_path / "planted"), "--canaries", "12", "--fresh", "100"]) == 0
    files = ["data=files", f"data.path={tmp_path / 'planted'}", f"data.manifest={tmp_path / 'planted.canaries.json'}"]
    tiny = [o for o in TINY if not o.startswith("data.")]
    record = run_in(tmp_path / "run", [*tiny, *files, "privacy=none", "audit=canary", "ledger.path=null"])
    audit = record["audit"]
    assert audit["attack"] == "canary" and audit["result"] in ("measured", "inconclusive")
    assert 0 < audit["n_members"] <= 12 and audit["n_nonmembers"] >= 100
    assert record["config"]["data"]["source"] == "files" and record["config"]["data"]["manifest"]


def test_no_drawn_secret_is_already_in_the_corpus(small_corpus, small_manifest):
    """The synthetic corpus holds canaries of the same shape: planting into it never reuses their texts."""
    planted, manifest = plant_canaries(small_corpus, **{**ARGS, "n_fresh": 500})
    drawn = {*manifest.fresh, *(c.text for c in manifest.inserted)}
    assert not drawn & set(map(str, small_corpus.texts))
    assert {c.text for c in small_manifest.planted} <= set(map(str, small_corpus.texts))  # there were some
