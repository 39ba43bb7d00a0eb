"""privacy.noise_source: secure DP noise (the default) cannot be regenerated from a run's record; seeded can.

- Same seed, secure: different noise (central DP-SGD, the DP-FedAvg server, a client-level DP-SGD
  client); same seed, seeded: the same noise, bit for bit.
- The reconstruction attack of issue 13 item 0, from record.json and model.pt alone: with seeded
  noise it recovers one round's clipped-update sum (to float rounding) and exactly the embedding
  rows the clients touched; with secure noise the same attack recovers noise.
- Capture (Flower Simulation Engine, client-level DP-SGD): the entropy each client draws for its
  noise never crosses the wire, and the client's noise is not derived from the server's message.
- The record, config, summary and report say which noise ran, and warn plainly when it was seeded.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.nn.utils import parameters_to_vector

import sandbox.privacy.noise as noise_module
from sandbox.config import ConfigError, resolve
from sandbox.federated import server as server_module
from sandbox.federated.aggregate import Update, gaussian_noise
from sandbox.federated.client import ClientData, LocalConfig
from sandbox.federated.client_dp import LocalDPSGD, PrivateLocalTrainer
from sandbox.federated.clients import partition_clients
from sandbox.federated.server import DPFedAvgSettings, FederatedServer, FederationConfig
from sandbox.prepare import Seeds, prepare
from sandbox.privacy import PrivacyBook
from sandbox.privacy.noise import NOISE_SOURCES, SEEDED_NOISE_WARNING, noise_generator, secure_generator
from sandbox.privacy.section import privacy_section
from sandbox.report.run_report import RunDir, build_report
from sandbox.run import run
from sandbox.summary import describe_run, summary_table
from sandbox.tasks import emoji
from sandbox.train.threads import single_threaded
from tests.conftest import TINY, compose_config
from tests.federated.test_flower import _blobs

pytestmark = pytest.mark.filterwarnings("ignore")


def run_with(overrides: list[str], out_dir: Path) -> dict:
    hydra_cfg = compose_config(overrides)
    out_dir.mkdir(parents=True)
    return run(resolve(hydra_cfg), out_dir=out_dir, resolved_config=OmegaConf.to_container(hydra_cfg, resolve=True))


def _models_differ(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a / "model.pt"), torch.load(b / "model.pt")
    return any(not torch.equal(sa[k], sb[k]) for k in sa)


# -- the helper --------------------------------------------------------------------------------------
def test_secure_generators_differ_and_seeded_ones_replay():
    a, b = (torch.randn(8, generator=noise_generator("secure", seeded_from=7)) for _ in range(2))
    assert not torch.equal(a, b)
    c, d = (torch.randn(8, generator=noise_generator("seeded", seeded_from=7)) for _ in range(2))
    assert torch.equal(c, d) and torch.equal(c, torch.randn(8, generator=torch.Generator().manual_seed(7)))
    assert NOISE_SOURCES == ("secure", "seeded")
    with pytest.raises(ValueError, match="noise_source"):
        noise_generator("urandom", seeded_from=7)
    with pytest.raises(ValueError, match="seed"):
        noise_generator("seeded", seeded_from=None)


def _from_entropy(entropy: bytes) -> torch.Generator:
    """``secure_generator()`` with the OS entropy replaced by ``entropy``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(noise_module, "_os_entropy", lambda n: entropy[:n])
        return secure_generator()


def test_the_secure_state_is_all_of_the_os_entropy_not_a_32_bit_seed():
    """torch's manual_seed keeps 32 bits (s and s + 2**32 draw alike); the secure state is all 624 words."""
    same = [torch.randn(4, generator=torch.Generator().manual_seed(s)) for s in (12345, 12345 + 2**32)]
    assert torch.equal(*same)  # why secrets.randbits(63) → manual_seed would give only 2**32 noise streams
    entropy = bytes(range(256)) * 9 + bytes(range(192))  # 2496 bytes = 624 words
    words = np.frombuffer(_from_entropy(entropy).get_state().numpy()[24 : 24 + 624 * 8].tobytes(), dtype=np.uint64)
    assert np.array_equal(words, np.frombuffer(entropy, dtype=np.uint32).astype(np.uint64))
    draws = torch.randn(2000, generator=_from_entropy(entropy))
    assert torch.equal(draws, torch.randn(2000, generator=_from_entropy(entropy)))  # a function of the entropy
    flipped = entropy[:-1] + bytes([entropy[-1] ^ 1])  # one bit of the last word changes the stream
    assert not torch.equal(draws, torch.randn(2000, generator=_from_entropy(flipped)))


# -- same seed: secure differs, seeded replays -------------------------------------------------------
def test_central_noise_generators_from_one_seed():
    seeds = Seeds.from_seed(0)
    secure = [torch.randn(32, generator=Seeds.from_seed(0).noise_generator("secure")) for _ in range(2)]
    seeded = [torch.randn(32, generator=Seeds.from_seed(0).noise_generator("seeded")) for _ in range(2)]
    assert not torch.equal(*secure) and torch.equal(*seeded)
    assert torch.equal(seeded[0], torch.randn(32, generator=torch.Generator().manual_seed(seeds.noise_seed)))


@pytest.mark.parametrize("source, same", [("secure", False), ("seeded", True)])
def test_the_dpfedavg_server_noise_from_one_seed(source, same):
    def one_round() -> torch.Tensor:
        dp = DPFedAvgSettings(noise_multiplier=1.0, clip_norm=1.0)
        server = FederatedServer(
            params=torch.zeros(64),
            n_clients=10,
            cfg=FederationConfig(rounds=1, sample_rate=0.5),
            dp=dp,
            book=PrivacyBook(unit="user", delta=1e-5, accountant="rdp"),
            seed=5,
            noise_source=source,
        )
        plan = server.next_round()
        for _ in plan.clients:
            server.receive(Update(delta=torch.zeros(64), n_examples=1, loss=0.0))
        server.finish_round()
        return server.params

    a, b = one_round(), one_round()
    assert torch.equal(a, b) is same and float(a.std()) > 0  # the same updates: the params are the noise


def test_the_server_noise_defaults_to_secure():
    kwargs = dict(
        params=torch.zeros(4),
        n_clients=4,
        cfg=FederationConfig(rounds=1),
        dp=DPFedAvgSettings(noise_multiplier=1.0, clip_norm=1.0),
        seed=0,
    )
    a, b = (FederatedServer(book=PrivacyBook(unit="user", delta=1e-5, accountant="rdp"), **kwargs) for _ in range(2))
    assert not torch.equal(torch.randn(8, generator=a.noise), torch.randn(8, generator=b.noise))


@pytest.mark.parametrize("source, same", [("secure", False), ("seeded", True)])
def test_a_client_level_dpsgd_client_noise_from_the_same_server_seed(source, same):
    cfg = emoji.EmojiTaskConfig(n_buckets=128, max_tokens=6, embedding_dim=8, hidden_dim=8)
    torch.manual_seed(0)
    model = emoji.EmojiModel(config=cfg, n_classes=5)
    params = parameters_to_vector(model.parameters()).detach().clone()
    dp = LocalDPSGD(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.5, steps=3, noise_source=source)
    trainer = PrivateLocalTrainer(model, LocalConfig(lr=0.3), dp)
    trainer.load(params)
    data = ClientData(tokens=torch.randint(1, 40, (6, 6)), labels=torch.randint(0, 5, (6,)))
    a, b = (trainer.update(data, generator=torch.Generator().manual_seed(3)).delta for _ in range(2))
    assert torch.equal(a, b) is same
    untouched = slice(40 * 8, 128 * 8)  # rows no example uses: the noise alone
    assert bool((a[untouched] != 0).all()) and torch.equal(a[untouched], b[untouched]) is same


def test_client_level_dpsgd_defaults_to_secure():
    assert LocalDPSGD(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.5, steps=1).noise_source == "secure"


CENTRAL = [*TINY, "privacy=dpsgd", "privacy.noise_multiplier=1.0", "privacy.target_epsilon=null", "seed=3"]


def test_two_central_dpsgd_runs_with_one_seed_draw_different_secure_noise(tmp_path):
    a = run_with(CENTRAL, tmp_path / "a")
    b = run_with(CENTRAL, tmp_path / "b")
    assert a["privacy"]["noise_source"] == "secure" and a["privacy"]["secure_rng"] is True
    assert _models_differ(tmp_path / "a", tmp_path / "b")
    # everything but the noise is the same run: steps, sampling rate, ε
    assert a["privacy"] == b["privacy"] and a["data"] == b["data"]


# -- the reconstruction attack from record.json + model.pt ------------------------------------------
N_BUCKETS, DIM = 4096, 8
ONE_ROUND = [
    "data.n_users=60",
    "data.n_workspaces=4",
    "data.n_canaries=3",
    "data.n_fresh_canaries=5",
    "data.max_messages_per_user=200",
    f"task.n_buckets={N_BUCKETS}",
    f"task.embedding_dim={DIM}",
    "task.hidden_dim=16",
    "progress=false",
    "mode=federated",
    "privacy=dpfedavg",
    "privacy.noise_multiplier=1.0",
    "privacy.target_epsilon=null",
    "privacy.clip_norm=1.0",
    "federation.rounds=1",
    "federation.sample_rate=1.0",
    "federation.server_optimizer=fedavg",
    "federation.server_lr=1.0",
    "federation.eval_every=1",
    "seed=11",
]
FLOAT_ERROR = 1.5e-5  # float32 rounding of (model − initial)·qN with qN ≈ 50: ~6e-6 measured
TOUCHED = 3e-5  # a touched row's largest |coordinate| of the clipped sum: ≥ 5e-5 measured


@pytest.fixture(scope="module")
def one_round_runs(tmp_path_factory) -> dict:
    """source → [(record, out_dir, true clipped sum), ×2]; both secure runs' OS entropy kept for the leak check."""
    root = tmp_path_factory.mktemp("reconstruction")
    out: dict = {"entropy": []}
    for source in ("seeded", "secure"):
        out[source] = []
        for i in range(2):
            sums = []
            with pytest.MonkeyPatch.context() as patch:
                finish = FederatedServer.finish_round

                def capture(self, finish=finish):  # the ground truth only: the attack never reads it
                    sums.append(self._sum.clone())
                    return finish(self)

                patch.setattr(server_module.FederatedServer, "finish_round", capture)
                entropy = noise_module._os_entropy
                patch.setattr(
                    noise_module, "_os_entropy", lambda n, e=entropy: out["entropy"].append(e(n)) or out["entropy"][-1]
                )
                record = run_with([*ONE_ROUND, f"privacy.noise_source={source}"], root / f"{source}-{i}")
            out[source].append((record, root / f"{source}-{i}", sums[0]))
    return out


def reconstruct(out_dir: Path) -> tuple[torch.Tensor, dict]:
    """The attack: from record.json and model.pt only, the round's sum of clipped updates.

    Rebuild the initial model from the recorded seed and config, regenerate the server's noise
    stream exactly as ``FederatedServer.__init__`` seeds it and ``noisy_mean`` draws it, and undo
    the FedAvg step: model = initial + lr·(sum + noise)/(q·N).
    """
    record = json.loads((out_dir / "record.json").read_text())
    cfg = resolve(OmegaConf.create(record["config"]))
    seeds = Seeds.from_seed(record["seed"])
    data = prepare(cfg, seeds)
    model = data.new_model(cfg, seeds)
    initial = parameters_to_vector(model.parameters()).detach().clone()
    model.load_state_dict(torch.load(out_dir / "model.pt"))
    final = parameters_to_vector(model.parameters()).detach()
    _, noise_seed, _ = np.random.SeedSequence([seeds.federation, 0xFEDA]).spawn(3)
    generator = torch.Generator().manual_seed(int(noise_seed.generate_state(1)[0]))
    p = record["privacy"]
    noise = gaussian_noise(initial.shape, std=p["noise_multiplier"] * p["clip_norm"], generator=generator)
    expected = p["sample_rate"] * record["data"]["n_clients"]
    return (final - initial) * expected / cfg.federation.server_lr - noise, {"cfg": cfg, "data": data}


def _rows_of_clients(data) -> set[int]:
    """Embedding rows the clients' tokens look up (every client took part: sample rate 1), from the data."""
    partition = partition_clients(data.corpus, data.train, unit="user")
    tokens = torch.unique(data.train.tokens[torch.as_tensor(partition.rows)])
    return {int(t) for t in tokens if t != emoji.PAD}


def _rows_above(recovered: torch.Tensor, threshold: float) -> set[int]:
    rows = recovered[: N_BUCKETS * DIM].view(N_BUCKETS, DIM).abs().amax(1)
    return {int(i) for i in torch.nonzero(rows > threshold).flatten()}


def test_seeded_noise_is_subtracted_from_record_and_model(one_round_runs):
    record, out_dir, true_sum = one_round_runs["seeded"][0]
    assert record["privacy"]["noise_source"] == "seeded" and record["privacy"]["secure_rng"] is False
    assert record["curve"][0]["clients"] == record["data"]["n_clients"]  # sample rate 1: every client
    recovered, known = reconstruct(out_dir)
    assert float((recovered - true_sum).abs().max()) <= FLOAT_ERROR  # the sum, to float rounding
    touched = _rows_of_clients(known["data"])
    assert 0.5 * N_BUCKETS < len(touched) < N_BUCKETS  # some rows are untouched, most are touched
    assert _rows_above(recovered, TOUCHED) == touched  # exactly the clients' rows, no false row


def test_the_same_attack_recovers_only_noise_under_secure_noise(one_round_runs):
    record, out_dir, true_sum = one_round_runs["secure"][0]
    assert record["privacy"]["noise_source"] == "secure" and record["privacy"]["secure_rng"] is True
    recovered, known = reconstruct(out_dir)
    error = recovered - true_sum
    zc = record["privacy"]["noise_multiplier"] * record["privacy"]["clip_norm"]
    # the subtracted stream is not the one that ran: the error is two independent noises, std √2·z·C
    assert 0.5 * zc < float(error.std()) < 3 * zc and float(error.abs().max()) > 1.0
    found, touched = _rows_above(recovered, TOUCHED), _rows_of_clients(known["data"])
    assert len(found) >= 0.99 * N_BUCKETS and len(found - touched) > 0.5 * (N_BUCKETS - len(touched))


def test_one_seed_two_runs_same_model_only_when_seeded(one_round_runs):
    (sa, da, _), (sb, db, _) = one_round_runs["seeded"]
    (ra, ea, _), (rb, eb, _) = one_round_runs["secure"]
    assert not _models_differ(da, db) and _models_differ(ea, eb) and _models_differ(da, ea)
    for key in ("epsilon", "steps", "events"):  # what ran, except the noise, is the same
        assert sa["privacy"][key] == ra["privacy"][key] == rb["privacy"][key]
    assert [p["clients"] for p in ra["curve"]] == [p["clients"] for p in sa["curve"]]


def test_the_secure_entropy_is_written_nowhere(one_round_runs):
    """Each secure run drew its server noise state from the OS; no 8 bytes of it are in any file it wrote."""
    drawn = one_round_runs["entropy"]  # per run: the noise state (624 words) and the client sampling's 256 bits
    noise, sampling = [e for e in drawn if len(e) == 2496], [e for e in drawn if len(e) == 32]
    assert len(noise) == 2 and len(set(noise)) == 2 and len(sampling) == 2 and len(drawn) == 4
    files = [f.read_bytes() for _, out_dir, _ in one_round_runs["secure"] for f in out_dir.iterdir() if f.is_file()]
    assert files
    for entropy in drawn:
        for chunk in (entropy[i : i + 8] for i in range(0, len(entropy), 8)):
            assert not any(chunk in f for f in files)
            assert str(int.from_bytes(chunk, "little")).encode() not in b"".join(files)


# -- capture: the client's noise entropy never crosses the Flower wire -------------------------------
ENTROPY_LOG_ENV = "SANDBOX_TEST_CLIENT_ENTROPY_LOG"


def record_client_entropy() -> None:
    """Ray worker setup hook (the ClientApp's processes): log every noise state a client draws."""
    import os

    import sandbox.privacy.noise as noise

    draw, path = noise._os_entropy, os.environ[ENTROPY_LOG_ENV]

    def recorded(n_bytes: int) -> bytes:
        entropy = draw(n_bytes)
        with open(path, "a", encoding="ascii") as log:
            log.write(f"{os.getpid()} {entropy.hex()}\n")  # Ray workers append concurrently
        return entropy

    noise._os_entropy = recorded


FLOWER_CLIENT_DP = [
    "data.n_users=40",
    "data.n_workspaces=4",
    "data.n_canaries=3",
    "data.n_fresh_canaries=5",
    "data.max_messages_per_user=200",
    "task.n_buckets=512",
    "task.embedding_dim=8",
    "task.hidden_dim=8",
    "progress=false",
    "mode=federated",
    "privacy=client_dpsgd",
    "privacy.noise_multiplier=1.0",
    "privacy.target_epsilon=null",
    "privacy.local_sample_rate=0.5",
    "federation.rounds=2",
    "federation.sample_rate=0.3",
    "federation.eval_every=2",
]


@pytest.fixture(scope="module")
def flower_capture(tmp_path_factory) -> dict:
    import ray

    from sandbox.federated.flower_capture import MESSAGE_LOG_ENV

    root = tmp_path_factory.mktemp("client-noise")
    messages, entropy_log = root / "messages.jsonl", root / "entropy.log"
    with pytest.MonkeyPatch.context() as patch:  # before Ray starts: its workers inherit the environment
        patch.setenv(MESSAGE_LOG_ENV, str(messages))
        patch.setenv(ENTROPY_LOG_ENV, str(entropy_log))
        init = ray.init

        def init_with_recorder(*args, runtime_env=None, **kwargs):
            runtime_env = {**(runtime_env or {}), "worker_process_setup_hook": record_client_entropy}
            return init(*args, runtime_env=runtime_env, **kwargs)

        patch.setattr(ray, "init", init_with_recorder)
        flower = run_with([*FLOWER_CLIENT_DP, "federation.engine=flower"], root / "flower")
    inprocess = run_with([*FLOWER_CLIENT_DP, "federation.engine=inprocess"], root / "inprocess")
    return {
        "flower": flower,
        "inprocess": inprocess,
        "root": root,
        "entries": [json.loads(line) for line in messages.read_text().splitlines()],
        "entropy": [bytes.fromhex(line.split()[1]) for line in entropy_log.read_text().splitlines()],
        "entropy_pids": [int(line.split()[0]) for line in entropy_log.read_text().splitlines()],
    }


def _train_exchanges(entries: list[dict]) -> list[tuple[dict, dict]]:
    """(what a client received, what it sent back) for every TRAIN message, paired by node and round."""
    received = {
        (e["dst_node_id"], e["group_id"]): e
        for e in entries
        if e["side"] == "client" and e["direction"] == "received" and e["message_type"] == "train"
    }
    sent = {
        (e["src_node_id"], e["group_id"]): e
        for e in entries
        if e["side"] == "client" and e["direction"] == "sent" and e["message_type"] == "train"
    }
    assert received.keys() == sent.keys()
    return [(received[k], sent[k]) for k in sorted(received)]


def _array(record: dict, key: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(record["values"][key]["bytes"])), allow_pickle=False)


def test_each_client_update_draws_its_own_noise_state(flower_capture):
    record, entries, drawn = flower_capture["flower"], flower_capture["entries"], flower_capture["entropy"]
    assert record["privacy"]["noise_source"] == "secure" and record["privacy"]["mechanism"] == "client_dpsgd"
    n_updates = sum(p["clients"] for p in record["curve"])
    assert n_updates > 0 and len(_train_exchanges(entries)) == n_updates
    # two fresh states per client update: its example sampling's and its noise's (both secret under secure)
    assert len(drawn) == 2 * n_updates and len(set(drawn)) == 2 * n_updates


def _entropy_found(entries: list[dict], entropy: bytes) -> list[str]:
    """Where any 64-bit piece of ``entropy`` (or any 32-bit word of it, as a number) shows in the messages."""
    haystack = b"\x00".join(blob for entry in entries for blob in _blobs(entry))
    numbers = {
        int(v)
        for e in entries
        for r in e.get("records", {}).values()
        if r["kind"] != "array"
        for v in r["values"].values()
        if isinstance(v, int) and not isinstance(v, bool)
    }
    found = ["hex"] if entropy.hex().encode() in haystack else []
    for i in range(0, len(entropy), 8):
        chunk = entropy[i : i + 8]
        found += [f"bytes {i}"] if chunk in haystack else []
        found += [f"int64 {i}"] if int.from_bytes(chunk, "little") in numbers else []
        found += [f"decimal {i}"] if str(int.from_bytes(chunk, "little")).encode() in haystack else []
    found += [f"word {w}" for w in sorted(numbers & {int(w) for w in np.frombuffer(entropy, dtype=np.uint32)})]
    return found


def test_no_client_noise_entropy_crosses_the_wire(flower_capture):
    entries, drawn = flower_capture["entries"], flower_capture["entropy"]
    assert drawn and all(_entropy_found(entries, entropy) == [] for entropy in drawn)


def test_the_entropy_check_finds_a_seed_smuggled_into_a_message(flower_capture):
    """Positive control: a piece of the entropy sent as a config int, or inside an array, is found."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    from sandbox.federated.flower_capture import records_as_json

    entropy = flower_capture["entropy"][0]
    seed = next(v for i in range(0, len(entropy), 8) if (v := int.from_bytes(entropy[i : i + 8], "little")) < 2**63)
    smuggled = [
        RecordDict({"instruction": ConfigRecord({"seed": seed})}),  # a Flower int is signed 64-bit
        RecordDict({"instruction": ConfigRecord({"seed": int(np.frombuffer(entropy[:4], np.uint32)[0])})}),
        RecordDict({"instruction": ConfigRecord({"note": f"seed {seed}"})}),
        RecordDict({"update": ArrayRecord({"values": Array(np.frombuffer(entropy[16:48], np.float32).copy())})}),
    ]
    for content in smuggled:
        assert _entropy_found([{"records": records_as_json(content)}], entropy) != []


def test_the_client_noise_comes_from_its_entropy_not_from_the_server_message(flower_capture, monkeypatch):
    """Replay one client update from what it received: only the client's own entropy reproduces what it sent;
    the seeded derivation from the message's seed (what a server could compute) does not."""
    from sandbox.federated.flower_client import client_side
    from sandbox.federated.flower_messages import run_config_from_text

    entries, drawn = flower_capture["entries"], flower_capture["entropy"]
    got, sent = _train_exchanges(entries)[0]
    instruction = got["records"]["instruction"]["values"]
    params = torch.from_numpy(_array(got["records"]["global-params"], "params").copy())
    reply = torch.from_numpy(_array(sent["records"]["update"], "values").copy())
    run_config, client = instruction["run-config"], int(instruction["client"])
    local_dp = LocalDPSGD(
        noise_multiplier=float(instruction["local-noise-multiplier"]),
        clip_norm=float(instruction["local-clip-norm"]),
        sample_rate=float(instruction["local-sample-rate"]),
        steps=int(instruction["local-steps"]),
        noise_source=instruction["local-noise-source"],
    )
    assert local_dp.noise_source == "secure"
    side = client_side(run_config)
    data = side.partition.data(client, side.examples)
    cfg = run_config_from_text(run_config)
    model = prepare(cfg, Seeds.from_seed(cfg.seed)).new_model(cfg, Seeds.from_seed(cfg.seed))
    trainer = PrivateLocalTrainer(model, side.local, local_dp)  # our own scratch model, as the client's

    def replay(source: str, states: list[bytes] | None = None) -> torch.Tensor:
        if states is not None:  # the client draws its sampling state, then its noise state
            it = iter(states)
            monkeypatch.setattr(noise_module, "_os_entropy", lambda n: next(it)[:n])
        trainer.dp = dataclasses.replace(local_dp, noise_source=source)
        trainer.load(params)
        with single_threaded():
            return trainer.update(data, generator=torch.Generator().manual_seed(int(instruction["seed"]))).delta

    def close(delta: torch.Tensor) -> bool:
        return float((delta - reply).abs().max()) <= 1e-5  # noise-scale apart otherwise

    assert float(reply.abs().max()) > 1e-3  # a real, noisy update
    by_worker: dict[int, list[bytes]] = {}  # each worker draws (sampling, noise) per update, in order
    for pid, state in zip(flower_capture["entropy_pids"], drawn):
        by_worker.setdefault(pid, []).append(state)
    pairs = [states[i : i + 2] for states in by_worker.values() for i in range(0, len(states), 2)]
    matches = [i for i, pair in enumerate(pairs) if close(replay("secure", pair))]
    assert len(matches) == 1  # exactly one of the client-drawn (sampling, noise) pairs made this update
    assert not close(replay("seeded"))  # the noise a server could derive from the seed it sent


def test_secure_inprocess_and_flower_runs_differ_by_the_mechanisms_randomness_only(flower_capture):
    flower, inprocess = flower_capture["flower"], flower_capture["inprocess"]
    # the client sampling is secret too under secure noise, so only the rounds and the per-round mechanism
    # (σ, q, local steps) agree; ε follows the busiest client, whose count depends on the sample
    assert len(flower["curve"]) == len(inprocess["curve"])

    # the events' step counts follow that busiest client too (the book merges its rounds): compare the
    # mechanism, and that every event is a whole number of rounds of local steps
    def mechanism(record):
        return {(e["noise_multiplier"], e["sample_rate"]) for e in record["privacy"]["events"]}

    assert mechanism(flower) == mechanism(inprocess) and len(mechanism(flower)) == 1
    for record in (flower, inprocess):
        per_round = record["privacy"]["local_steps_per_round"]
        assert all(e["steps"] % per_round == 0 for e in record["privacy"]["events"])
    assert _models_differ(flower_capture["root"] / "flower", flower_capture["root"] / "inprocess")


# -- config, record, summary, report -----------------------------------------------------------------
def test_secure_is_the_default_in_every_privacy_config():
    for privacy in ("none", "dpsgd", "dpfedavg", "client_dpsgd"):
        mode = ["mode=federated"] if privacy in ("dpfedavg", "client_dpsgd") else []
        assert resolve(compose_config([*TINY, *mode, f"privacy={privacy}"])).privacy.noise_source == "secure"
    seeded = resolve(compose_config([*TINY, "privacy=dpsgd", "privacy.noise_source=seeded"]))
    assert seeded.privacy.noise_source == "seeded"


def test_an_unknown_noise_source_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"privacy\.noise_source: must be one of \('secure', 'seeded'\)"):
        resolve(compose_config([*TINY, "privacy=dpsgd", "privacy.noise_source=urandom"]))


def _section(source):
    book = PrivacyBook(unit="example", delta=1e-5, accountant="rdp")
    book.record(noise_multiplier=1.0, sample_rate=0.1)
    return privacy_section(
        mechanism="dpsgd",
        unit="example",
        book=book,
        steps=1,
        noise_multiplier=1.0,
        sample_rate=0.1,
        clip_norm=1.0,
        noise_source=source,
    )


def test_the_record_says_where_the_noise_came_from():
    secure, seeded = _section("secure"), _section("seeded")
    assert (secure["noise_source"], secure["secure_rng"], "noise_warning" in secure) == ("secure", True, False)
    assert (seeded["noise_source"], seeded["secure_rng"]) == ("seeded", False)
    assert seeded["noise_warning"] == SEEDED_NOISE_WARNING and "NOT differentially private" in SEEDED_NOISE_WARNING
    assert privacy_section(mechanism="none", unit="example", book=None, steps=3)["noise_source"] is None
    with pytest.raises(ValueError, match="noise source"):
        _section(None)


def _record(source: str) -> dict:
    from tests.report.test_run_report import central_record

    record = central_record()
    record["privacy"] = {
        **record["privacy"],
        **{k: v for k, v in _section(source).items() if k in ("noise_source", "secure_rng", "noise_warning")},
    }
    record["timing"] = {"seconds": 1.0}
    return record


def test_the_summary_and_the_report_warn_plainly_about_seeded_noise(tmp_path):
    seeded, secure = _record("seeded"), _record("secure")
    text = describe_run(seeded, tmp_path)
    assert f"WARNING: {SEEDED_NOISE_WARNING}" in text and "seeded noise)" in text
    assert "WARNING" not in describe_run(secure, tmp_path) and "secure noise)" in describe_run(secure, tmp_path)
    assert "SEEDED NOISE" in summary_table([(tmp_path / "a" / "record.json", seeded)])
    assert "SEEDED NOISE" not in summary_table([(tmp_path / "a" / "record.json", secure)])
    for record, warned in ((seeded, True), (secure, False)):
        report = build_report(RunDir(path=tmp_path, record=record))
        for page in (report.markdown(), report.html()):
            assert (f"WARNING: {SEEDED_NOISE_WARNING}" in page) is warned
            assert "noise source" in page


def test_the_dp_sampling_is_secret_under_secure_noise_and_replays_when_seeded():
    """Amplification by sampling assumes nobody can replay the sample: under secure noise DP-FedAvg's client
    sampling and DP-SGD's Poisson batches come from the OS; seeded, they replay; FedAvg without DP stays seeded."""
    from sandbox.federated.server import DPFedAvgSettings, FederatedServer, FederationConfig
    from sandbox.prepare import Seeds
    from sandbox.privacy import PrivacyBook

    def plans(source, dp=True):
        cfg = FederationConfig(rounds=5, sample_rate=0.3)
        settings = DPFedAvgSettings(noise_multiplier=1.0, clip_norm=1.0) if dp else None
        book = PrivacyBook(unit="user", delta=1e-5, accountant="rdp") if dp else None
        server = FederatedServer(
            params=torch.zeros(3), n_clients=200, cfg=cfg, dp=settings, book=book, seed=4, noise_source=source
        )
        out = []
        while (plan := server.next_round()) is not None:
            out.append(tuple(plan.clients))
            server.finish_round()
        return out

    assert plans("seeded") == plans("seeded") and plans("secure") != plans("secure")
    assert plans("secure", dp=False) == plans("seeded", dp=False)
    seeds = Seeds.from_seed(3)
    draw = lambda g: torch.rand(8, generator=g).tolist()  # noqa: E731
    assert draw(Seeds.from_seed(3).dp_batches("seeded")) == draw(seeds.dp_batches("seeded"))
    assert draw(seeds.dp_batches("secure")) != draw(seeds.dp_batches("secure"))
