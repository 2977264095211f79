"""Model sources: embedded, local folder, .gguf file and hub id (through a local hub cache)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import SCRIPTS, fake_hub_cache
from sppoflow.errors import UserError
from sppoflow.models.loading import import_policy, load_policy, resolve_source


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


def test_a_hub_id_missing_from_the_cache_offline_is_one_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match=r"^policy\.model: cannot load sppo-test/absent: "):
        import_policy("sppo-test/absent", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_bf16_source_stays_bf16_on_disk(tiny_model_dir, tmp_path):
    from safetensors import safe_open

    from sppoflow.models.loading import folder_dtype, load_causal_lm

    model = load_causal_lm(resolve_source(str(tiny_model_dir)), torch.bfloat16)
    model.save_pretrained(tmp_path / "bf16")
    for path in tiny_model_dir.iterdir():
        if path.name.startswith("tokenizer") or path.suffix == ".jinja":
            (tmp_path / "bf16" / path.name).write_bytes(path.read_bytes())
    import_policy(str(tmp_path / "bf16"), tmp_path / "kept")
    import_policy(str(tmp_path / "bf16"), tmp_path / "fp32", dtype="float32")
    assert folder_dtype(tmp_path / "kept") == torch.bfloat16
    assert folder_dtype(tmp_path / "fp32") == torch.float32
    with safe_open(str(tmp_path / "kept" / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.bfloat16}  # noqa: SIM118
    kept = (tmp_path / "kept" / "model.safetensors").stat().st_size
    widened = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    assert 1.9 < widened / kept < 2.1


def test_cast_saved_weights_rounds_to_nearest_and_updates_the_config(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from sppoflow.models.loading import cast_saved_weights, folder_dtype, load_causal_lm

    folder = tmp_path / "model"
    model, _ = load_policy(tiny_model_dir)
    model.save_pretrained(folder, max_shard_size="200KB")  # several files and an index
    before = {}
    for path in folder.glob("*.safetensors"):
        before.update(load_file(path))
    assert len(list(folder.glob("*.safetensors"))) > 1
    cast_saved_weights(folder, torch.bfloat16)
    after = {}
    for path in folder.glob("*.safetensors"):
        after.update(load_file(path))
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor.to(torch.bfloat16)), name
    assert folder_dtype(folder) == torch.bfloat16
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in after.values())
    reloaded = load_causal_lm(resolve_source(str(folder)))  # upcast: fp32 training weights
    assert next(reloaded.parameters()).dtype == torch.float32


def test_an_unknown_dtype_is_named(tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        import_policy(str(tiny_model_dir), tmp_path / "out", dtype="fp8")


def test_on_a_gpu_the_weights_load_straight_onto_it(tiny_model_dir, monkeypatch):
    """No GPU here: from_pretrained is replaced by a recorder, and CUDA is said to exist."""
    from transformers import AutoModelForCausalLM

    from sppoflow.train.round import process_device
    from sppoflow.train.settings import TrainSettings

    calls = []
    real = AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(
        AutoModelForCausalLM,
        "from_pretrained",
        lambda *args, **kwargs: calls.append(kwargs) or real(*args, dtype=kwargs["dtype"]),
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")  # the 4th process of accelerate launch
    device = process_device(TrainSettings(device="auto"))
    assert device == torch.device("cuda", 3)
    load_policy(tiny_model_dir, device=device)
    assert calls[-1]["device_map"] == {"": "cuda:3"}
    load_policy(tiny_model_dir, device=torch.device("cpu"))
    assert "device_map" not in calls[-1]
