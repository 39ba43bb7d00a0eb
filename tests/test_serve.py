"""A trained model serves suggestions (sandbox/serve.py, sandbox/suggest.py)."""

from __future__ import annotations

import json

import pytest
import torch

import sandbox
from sandbox.serve import ServeError
from sandbox.suggest import main
from tests.conftest import TINY, run_in


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "run"
    run_in(out, [*TINY, "privacy=none", "ledger.path=null"])
    return out


def test_the_record_holds_what_inference_needs(run_dir):
    model = json.loads((run_dir / "record.json").read_text())["model"]
    assert model["task_class"] == "sandbox.tasks.emoji.EmojiTask"
    assert model["model_class"] == "sandbox.tasks.text.HashedBagModel"
    assert len(model["classes"]) > 5 and all(isinstance(c, str) for c in model["classes"])
    assert model["tokenizer"].startswith("sandbox-unicode-1")


def test_suggest_is_the_models_own_top_k_in_its_label_space(run_dir):
    suggester = sandbox.load(run_dir)
    text = "party time, congratulations on the launch"
    got = suggester.suggest(text, 3)
    assert len(got) == 3 and got[0].probability >= got[1].probability >= got[2].probability
    # independently: the same featuriser and weights, through the task the record names
    from sandbox.tasks.emoji import EmojiTask

    classes = json.loads((run_dir / "record.json").read_text())["model"]["classes"]
    record_task = json.loads((run_dir / "record.json").read_text())["config"]["task"]
    task = EmojiTask(**{k: v for k, v in record_task.items() if k != "_target_"})
    model = task.build_model(len(classes))
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    logits = model.eval()(task.featurize([text]))[0]
    assert [s.label for s in got] == [classes[i] for i in torch.topk(logits, 3).indices.tolist()]
    assert sum(s.probability for s in suggester.suggest(text, len(classes))) == pytest.approx(1.0)
    assert len(suggester.suggest(text)) == task.top_k  # default k: the task's top_k


def test_the_cli_prints_suggestions(run_dir, capsys):
    assert main([str(run_dir), "ship it :tada:", "--k", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("'ship it :tada:': ") and len(line.split("  ")) == 2


def test_a_run_directory_that_cannot_serve_is_one_error_line(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # TEXT missing: a usage error is bad input
        main([str(run_dir)])
    assert stop.value.code == 3
    assert main([str(tmp_path / "nothing"), "hi"]) == 3
    assert "record.json: missing" in capsys.readouterr().err
    # a record from before models could serve: no label space
    old = tmp_path / "old"
    old.mkdir()
    record = json.loads((run_dir / "record.json").read_text())
    del record["model"]["classes"]
    (old / "record.json").write_text(json.dumps(record))
    (old / "model.pt").write_bytes((run_dir / "model.pt").read_bytes())
    with pytest.raises(ServeError, match="model.classes"):
        sandbox.load(old)
    # a model.pt that is not the recorded model
    other = tmp_path / "other"
    other.mkdir()
    (other / "record.json").write_text((run_dir / "record.json").read_text())
    state = torch.load(run_dir / "model.pt", weights_only=True)
    torch.save({k: v + 1 for k, v in state.items()}, other / "model.pt")
    assert main([str(other), "hi"]) == 3
    assert "not the model of" in capsys.readouterr().err
