"""sandbox/conf on its schemas: every group option and every experiment (each sweep job) composes
and resolves; each YAML value is the schema's default or a deliberate override; Enums stay plain
strings in the record's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from sandbox.config import ConfigError, plain, resolve, schema
from sandbox.config.store import SCHEMAS, schema_node
from tests.conftest import CONF_DIR, TINY, compose_config

CONF = Path(CONF_DIR)

# What a group option needs besides itself to be a config that runs.
CONTEXT = {
    "privacy/dpfedavg": ["mode=federated"],
    "privacy/client_dpsgd": ["mode=federated"],
    "privacy/dpftrl": ["mode=federated"],
    "federation/cross_silo": ["mode=federated", "privacy=dpfedavg"],
    "federation/cross_device": ["mode=federated", "privacy=dpfedavg"],
    "audit/suggestions": ["task=jobs"],
    "audit/server_view": ["mode=federated", "privacy=dpfedavg"],
    "audit/canary_clients": ["mode=federated", "privacy=dpfedavg"],
    "data/files": ["data.path=/some/corpus"],
    "claim/anonymized-aggregated": ["task=jobs", "audit=suggestions"],
}
GROUPS = ("task", "data", "train", "privacy", "federation", "audit", "claim")
OPTIONS = sorted(f"{group}/{path.stem}" for group in GROUPS for path in (CONF / group).glob("*.yaml"))


def test_the_groups_are_all_there():
    assert {
        "train/default",
        "train/dpsgd",
        "privacy/none",
        "privacy/dpsgd",
        "privacy/dpfedavg",
        "privacy/client_dpsgd",
        "federation/cross_device",
        "federation/cross_silo",
        "audit/none",
        "audit/canary",
        "data/synthetic",
        "data/files",
        "task/emoji",
    } <= set(OPTIONS)
    assert not (CONF.parent.parent / "conf").exists()  # conf/ moved into the package (package data)


@pytest.mark.parametrize("option", OPTIONS)
def test_every_group_option_composes_and_resolves(option):
    group, name = option.split("/")
    cfg = compose_config([*CONTEXT.get(option, []), f"{group}={name}"])
    run = resolve(cfg)
    if group in ("privacy", "federation", "audit", "train"):
        assert getattr(run, group) is not None
    json.dumps(plain(cfg))  # the record's config: plain data


# -- one source of defaults -----------------------------------------------------------------------
# (file, key) pairs whose value differs from the schema's default on purpose. Any other value a
# file sets must equal the dataclass default: a dataclass default changed without its YAML (or a
# YAML value changed without its dataclass) fails here.
DELIBERATE = {
    "config": {"ledger.path"},  # the CLI keeps a ledger (library use: none)
    "train/dpsgd": {"epochs", "batch_size", "lr"},
    "privacy/dpsgd": {"mechanism", "target_epsilon"},
    "privacy/dpfedavg": {"mechanism", "unit", "target_epsilon"},
    "privacy/client_dpsgd": {"mechanism", "target_epsilon"},
    "privacy/dpftrl": {"mechanism", "unit", "target_epsilon", "clients_per_round"},
    "federation/cross_silo": {"unit", "sample_rate", "local_batch_size"},
    "audit/loss": {"attack"},
    "audit/lira": {"attack"},
    "audit/rmia": {"attack"},
    "audit/canary": {"attack"},
    "audit/suggestions": {"attack", "threat"},
    "audit/server_view": {"attack"},
    "audit/canary_clients": {"attack"},
    "data/synthetic": {
        "topic_channels_per_workspace",
        "user_topic_concentration",
        "channel_discovery",
        "seeking_rate",
    },  # follow the task (task=channels)
    "data/personal": {"personal_rate", "contact_detail_rate", "everyday_rate"},  # personal content on
}
SCHEMA_OF = {
    "config": "config",
    "train": "train",
    "privacy": "privacy",
    "federation": "federation",
    "audit": "audit",
    "data/synthetic": "data_synthetic",
    "data/personal": "data_synthetic",
    "data/files": "data_files",
}
SCHEMA_FILES = [
    "config",
    *(o for o in OPTIONS if o.split("/")[0] in ("train", "privacy", "federation", "audit", "data")),
]


def _flat(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _defaults(option: str) -> dict:
    name = SCHEMA_OF.get(option) or SCHEMA_OF[option.split("/")[0]]
    return dict(_flat(OmegaConf.to_container(schema_node(SCHEMAS[name]), enum_to_str=True)))


def _set_by(option: str) -> dict:
    raw = OmegaConf.to_container(OmegaConf.load(CONF / f"{option}.yaml"), resolve=False)
    raw.pop("defaults", None)
    raw.pop("hydra", None)
    return dict(_flat(raw))


@pytest.mark.parametrize("option", SCHEMA_FILES)
def test_each_yaml_value_is_the_schema_default_or_a_deliberate_override(option):
    defaults, values = _defaults(option), _set_by(option)
    first = OmegaConf.load(CONF / f"{option}.yaml").get("defaults", [])
    assert any(str(d).startswith("/schema/") for d in first) or option == "federation/cross_silo", (
        f"{option}.yaml: its defaults list must start from its schema (- /schema/NAME@_here_)"
    )
    deliberate = DELIBERATE.get(option, set())
    for key, value in values.items():
        assert key in defaults, f"{option}.yaml: {key} is not in the schema"
        if key not in deliberate:
            assert value == defaults[key], (
                f"{option}.yaml sets {key}: {value!r} but the schema's default is {defaults[key]!r}: "
                f"move the value into sandbox/config/schema.py (one source of defaults), or list it in "
                f"DELIBERATE if this option overrides it on purpose"
            )
    for key in deliberate:
        assert key in values, f"DELIBERATE lists {option}:{key}, which the file does not set"
        assert values[key] != defaults[key], (
            f"{option}.yaml: {key}: {values[key]!r} is the schema's default now: not an override, drop it"
        )


def test_the_defaults_are_what_runs_without_options():
    cfg = resolve(compose_config(["privacy=none"]))
    assert cfg.train == schema.TrainConfig() and cfg.audit == schema.AuditConfig()
    assert cfg.privacy == schema.PrivacyConfig()
    fed = resolve(compose_config(["mode=federated", "privacy=none"]))
    assert fed.federation == schema.FederationConfig()
    assert (fed.federation.local_lr, fed.federation.server_optimizer) == (1.0, "fedavgm")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (8, 1024, 0.005)
    dp = resolve(compose_config([]))  # privacy=dpsgd selects train=dpsgd
    assert (dp.train.epochs, dp.train.batch_size, dp.train.lr) == (15, 4096, 0.02)
    assert resolve(compose_config(["train=default"])).train == schema.TrainConfig()


# -- the schema refuses ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, key",
    [
        ("privacy.colour=blue", "privacy.colour"),
        ("train.lr=fast", "train.lr"),
        ("privacy.mechanism=dp_sgd", "privacy.mechanism"),
        ("federation.engine=grpc", "federation.engine"),
        ("audit.threat=greybox", "audit.threat"),
        ("ledger.on_exceed=ignore", "ledger.on_exceed"),
        ("tracking.backend=wandb", "tracking.backend"),
        ("mode=decentral", "mode"),
        ("data.n_user=5", "data.n_user"),
        ("seed=zero", "seed"),
        ("privacy=dp_sgd", "privacy"),
    ],
)
def test_a_typo_or_mistyped_value_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.") + ":"):
        resolve(compose_config([override]))


def test_a_typo_in_a_yaml_file_is_refused(tmp_path):
    conf = tmp_path / "conf"
    import shutil

    shutil.copytree(CONF, conf)
    (conf / "train" / "default.yaml").write_text("defaults:\n  - /schema/train@_here_\n  - _self_\nlearning_rate: 1\n")
    with (
        initialize_config_dir(config_dir=str(conf), version_base="1.3"),
        pytest.raises(Exception, match="learning_rate"),
    ):
        compose(config_name="config", overrides=["privacy=none"])


def test_choices_are_str_enums_and_the_record_config_is_plain_strings():
    cfg = compose_config([*TINY, "mode=federated", "privacy=dpfedavg"])
    run = resolve(cfg)
    assert isinstance(run.privacy.mechanism, schema.Mechanism) and run.privacy.mechanism == "dpfedavg"
    assert f"{run.privacy.mechanism}/{run.mode}/{run.federation.unit}" == "dpfedavg/federated/user"
    assert run.privacy.unit == "user" and type(run.privacy.unit) is str  # ${federation.unit}: a plain str
    record = plain(cfg)
    for section, key in [
        ("privacy", "mechanism"),
        ("privacy", "accountant"),
        ("federation", "engine"),
        ("audit", "attack"),
        ("ledger", "on_exceed"),
        ("tracking", "backend"),
    ]:
        assert type(record[section][key]) is str, (section, key)
    assert type(record["mode"]) is str and json.loads(json.dumps(record)) == record


# -- experiments ------------------------------------------------------------------------------------
# What experiments/NAME/run.sh ran before the experiment configs, run by run: every sweep job of
# +experiment=NAME must be exactly this config.
LJ = ["task=jobs", "audit=suggestions", "claim=anonymized-aggregated", "progress=false"]
LJ_FED = ["mode=federated", "federation.local_epochs=5", "federation.rounds=200"]
SC = ["task=channels", "audit=suggestions", "claim=anonymized-aggregated", "progress=false"]
SC_FED = [
    "mode=federated",
    "federation.local_epochs=5",
    "federation.rounds=400",
    "federation.server_optimizer=fedadam",
    "federation.server_lr=0.05",
]
SE = ["task=emoji", "data.n_canaries=150", "data.n_fresh_canaries=1000", "progress=false"]
SE_FED = ["mode=federated", "audit.control_on=central"]
# The federated audits on the personal-content corpus (issue 15): each job is one model × one audit.
SEF = ["task=emoji", "data=personal", "data.n_canaries=150", "data.n_fresh_canaries=1000", "progress=false"]
SEF_AUDIT = ["mode=federated", "audit.canary_clients=1000", "audit.canary_all_iterates=true"]
SEF_MODELS = {
    "fedavgm": ["privacy=none"],
    **{f"dp{e}": ["privacy=dpfedavg", f"privacy.target_epsilon={e}"] for e in (1, 4, 8)},
}
SES = ["progress=false", "data.n_users=600", "data.n_workspaces=30", "federation.engine=flower"]
SES += ["federation.rounds=30", "federation.sample_rate=0.1", "federation.eval_every=10"]
SES += ["federation.secagg_clipping_range=8.0", "audit.canary_clients=100", "audit.server_view_retrain_control=true"]
BEFORE = {
    "slack-emoji-secagg": {
        f"{model}-{'secagg-' if secagg else ''}{audit}": [
            "task=emoji",
            "data=personal",
            f"audit={audit}",
            "mode=federated",
            *SES,
            *SEF_MODELS[model],
            f"federation.secagg={str(secagg).lower()}",
        ]
        for model in ("fedavgm", "dp1", "dp4", "dp8")
        for secagg in (False, True)
        for audit in ("server_view", "canary_clients")
    },
    "slack-emoji-federated": {
        f"{model}-{audit}": [*SEF, f"audit={audit}", *SEF_AUDIT, *privacy]
        for model, privacy in SEF_MODELS.items()
        for audit in ("canary_clients", "server_view")
    },
    "linkedin-jobs": {
        "central": [*LJ, "privacy=none"],
        "fedavgm": [*LJ, *LJ_FED, "privacy=none"],
        **{
            f"dp{e}": [
                *LJ,
                *LJ_FED,
                "federation.server_optimizer=fedavg",
                "privacy=dpfedavg",
                f"privacy.target_epsilon={e}",
            ]
            for e in (1, 4, 8)
        },
    },
    "slack-channels": {
        "central": [*SC, "privacy=none", "train.epochs=60"],
        "fedadam": [*SC, *SC_FED, "privacy=none"],
        **{f"dp{e}": [*SC, *SC_FED, "privacy=dpfedavg", f"privacy.target_epsilon={e}"] for e in (1, 4, 8)},
    },
    "slack-emoji": {
        "central-lira": [*SE, "audit=lira", "privacy=none"],
        "fedavgm-lira": [*SE, "audit=lira", *SE_FED, "privacy=none"],
        "dp1-lira": [*SE, "audit=lira", *SE_FED, "privacy=dpfedavg", "privacy.target_epsilon=1"],
    },
}
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The jobs ``python -m sandbox -m +experiment=NAME`` runs: the overrides of each (basic sweeper)."""
    import itertools

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    parser = OverridesParser.create()
    axes = [
        [f"{key}={value}" for value in parser.parse_override(f"{key}={spec}").sweep_string_iterator()]
        for key, spec in params.items()
    ]
    return [list(job) for job in itertools.product(*axes)]


def test_every_experiment_of_experiments_has_a_config():
    on_disk = {p.parent.name for p in (CONF.parent.parent / "experiments").glob("*/run.sh")}
    assert set(EXPERIMENTS) == on_disk == set(BEFORE)
    for name in EXPERIMENTS:
        run_sh = (CONF.parent.parent / "experiments" / name / "run.sh").read_text()
        lines = [line for line in run_sh.splitlines() if "-m sandbox " in line]
        assert lines == [f'"$PY" -m sandbox -m +experiment={name} hydra.sweep.dir="$OUT"'], lines


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_sweep_job_is_the_config_run_sh_ran_before(experiment):
    jobs = sweep_jobs(experiment)
    names = [job[-1].split("=", 1)[1] for job in jobs]
    assert sorted(names) == sorted(BEFORE[experiment]) and len(set(names)) == len(names)
    for job, name in zip(jobs, names):
        cfg = compose_config([f"+experiment={experiment}", *job])
        resolve(cfg)
        assert plain(cfg) == plain(compose_config(BEFORE[experiment][name])), f"{experiment}/{name}"
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            hydra = compose(
                config_name="config", overrides=[f"+experiment={experiment}", *job], return_hydra_config=True
            ).hydra
        key = job[-1].split("=", 1)[0].lstrip("+")
        assert hydra.runtime.choices[key] == name  # the run directory: hydra.sweep.dir/NAME
        assert OmegaConf.to_container(hydra.sweep)["subdir"] == f"${{hydra:runtime.choices.{key}}}"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_experiment_with_tiny_overrides_resolves(experiment):
    for job in sweep_jobs(experiment):
        resolve(compose_config([f"+experiment={experiment}", *job, *TINY]))
