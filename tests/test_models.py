"""Model sources: embedded, local folder, .gguf file and hub id (through a local hub cache)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS, fake_hub_cache
from sppoflow.errors import UserError
from sppoflow.models import import_policy, load_policy, resolve_source


def test_embedded_source_is_found():
    source = resolve_source("embedded:smollm2-135m-instruct")
    assert source.kind == "embedded"
    assert (Path(source.folder) / source.gguf_file).is_file()


def test_unknown_embedded_name():
    with pytest.raises(UserError, match="unknown embedded model 'embedded:gpt-9'"):
        resolve_source("embedded:gpt-9")


@pytest.mark.parametrize("reference", ["/no/such/model", "./missing-model", "a/b/c"])
def test_missing_path_is_an_error_not_a_hub_id(reference):
    with pytest.raises(UserError, match=f"model path {reference} does not exist"):
        resolve_source(reference)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"has no config\.json"):
        resolve_source(str(tmp_path))


def test_hub_ids_are_recognised():
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    assert resolve_source("gpt2").kind == "hub"


def test_local_folder_round_trip(tiny_model_dir, tmp_path):
    out = tmp_path / "iter0"
    import_policy(str(tiny_model_dir), out)
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "sppo_source.json").read_text())["kind"] == "local"
    model, tokenizer = load_policy(out)
    assert tokenizer.chat_template and model.config.num_hidden_layers == 2


def test_model_without_chat_template_needs_one(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.name != "chat_template.jinja":
            (plain / f.name).write_bytes(f.read_bytes())
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(
        UserError, match=r"has no chat template; give one with policy\.chat_template"
    ):
        import_policy(str(plain), tmp_path / "out")
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    import_policy(str(plain), tmp_path / "out", chat_template=str(template))
    assert load_policy(tmp_path / "out")[1].chat_template == template.read_text()


def test_hub_id_loads_through_the_hub_code_path_offline(tiny_model_dir, tmp_path):
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "sppo-test/tiny-llama", tiny_model_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = tmp_path / "from-hub"
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "base_model.py"),
            "--model",
            "sppo-test/tiny-llama",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "sppo_source.json").read_text())["kind"] == "hub"
    missing = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "base_model.py"),
            "--model",
            "sppo-test/absent",
            "--out",
            str(tmp_path / "x"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    [line] = missing.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: cannot load tokenizer of sppo-test/absent")
