"""Safe defaults: a model's own code runs only when the config trusts it, a .bin weights file
loads only as tensors, nothing is pushed to a hub, and SQL never splices a path."""

import json
import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import torch

from helpers import ROOT
from sppoflow.aggregate.win_rates import register
from sppoflow.config.validation import validate
from sppoflow.errors import UserError
from sppoflow.models.loading import import_policy, load_policy
from sppoflow.report.exports import write_database


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_model_with_its_own_code_is_refused_unless_trusted(tmp_path, tiny_model_dir):
    folder = copy_model(tiny_model_dir, tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as error:
        import_policy(str(folder), tmp_path / "out")
    assert str(error.value) == (
        f"policy.model: {folder} brings its own Python code (auto_map in config.json), which "
        "is not run unless you trust it: set policy.trust_remote_code: true"
    )
    assert not (tmp_path / "out").exists()
    assert validate({})["policy"]["trust_remote_code"] is False
    assert validate({})["judge"]["trust_remote_code"] is False


class Payload:
    """A pickle that runs a command when loaded: what weights_only=True refuses."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_bin_file_loads_only_as_tensors(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    plain = copy_model(tiny_model_dir, tmp_path / "bin")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    (plain / "model.safetensors").unlink()
    torch.save(model.state_dict(), plain / "pytorch_model.bin")
    loaded, _ = load_policy(plain)  # tensors alone load
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)

    marker = tmp_path / "ran"
    torch.save({"lm_head.weight": Payload(marker)}, plain / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"a \.bin weights file that holds more than tensors"):
        load_policy(plain)
    assert not marker.exists()  # the payload never ran


def test_training_never_pushes_to_a_hub():
    from sppoflow.train.settings import TrainSettings
    from sppoflow.train.trainer import training_arguments

    args = training_arguments(TrainSettings(), Path("/tmp/state"), torch.device("cpu"), "fp32")
    assert args.push_to_hub is False
    sources = [p.read_text() for p in (ROOT / "src").rglob("*.py")]
    calls = [line for text in sources for line in text.splitlines() if "push_to_hub(" in line]
    assert calls == []


def test_sql_reads_a_path_with_a_quote(tmp_path, monkeypatch):
    folder = tmp_path / "it's here"
    folder.mkdir()
    frame = pd.DataFrame({"prompt_id": ["a"], "response_token_ids": [[1]], "it's": [2]})
    frame.to_parquet(folder / "samples.parquet")
    con = duckdb.connect()
    register(con, "samples", folder / "samples.parquet")
    assert con.execute("SELECT * FROM samples").df().to_dict("records") == [
        {"prompt_id": "a", "it's": 2}
    ]
    results = folder / "results" / "iter1"
    results.mkdir(parents=True)
    frame.to_parquet(results / "samples.parquet")
    monkeypatch.chdir(folder)  # the database's views read paths relative to the run's folder
    assert "samples" in write_database(Path("results/sppo.duckdb"))
