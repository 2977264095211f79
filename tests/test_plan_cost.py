"""The cost of a plan before it is submitted (sppoflow.workflow.plan_cost,
scripts/plan_cost.py): jobs,
GPU-hours against the cost model's formulas, measured rates from a run's records, memory
against the requested GPU, and the warning the workflow prints before anything runs."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import ROOT, run_script, snakemake
from sppoflow.config.loading import load_configs
from sppoflow.config.validation import validate
from sppoflow.errors import UserError
from sppoflow.workflow.memory_model import KNOWN_SHAPES, Shape
from sppoflow.workflow.plan_cost import plan_cost, plan_lines

PAPER = ROOT / "config" / "paper"
MISTRAL = yaml.safe_load((PAPER / "mistral-7b-instruct-v0.2.yaml").read_text())
GEMMA = yaml.safe_load((PAPER / "gemma-2-9b-it.yaml").read_text())
H100 = {"SPPO_SLURM_GPU_MODEL": "h100"}


def by_stage(plan) -> dict[str, list]:
    found: dict[str, list] = {}
    for stage in plan.stages:
        found.setdefault(stage.stage, []).append(stage)
    return found


def test_parameters_are_counted_from_a_models_config():
    mistral = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000,
               "tie_word_embeddings": False}  # fmt: skip
    assert Shape.from_config(mistral).parameters == pytest.approx(7.24e9, rel=0.002)
    smollm2 = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
               "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
               "tie_word_embeddings": True}  # fmt: skip
    shape = Shape.from_config(smollm2)
    assert shape.parameters == pytest.approx(134.5e6, rel=0.002)
    known = KNOWN_SHAPES["embedded:smollm2-135m-instruct"]
    assert (shape.layers, shape.hidden, shape.kv_heads) == (known.layers, known.hidden, 3)


def test_the_paper_plan_has_its_jobs_and_the_cost_models_hours():
    plan = plan_cost(validate(MISTRAL), None, H100)
    stages = by_stage(plan)
    # base model; 8 eval shards of round 0; per round 8 sample, 8 score, 1 train, 8 eval, 1
    assert sum(s.jobs for s in plan.stages) == 1 + 8 + 3 * (8 + 8 + 1 + 8 + 1)
    n, k, response, prompt, p = 20000, 5, 450, 150, 7.24e9
    sample_hours = n * k * response / 3000 / 3600  # one GPU per shard: GPU-h = work / rate
    assert sum(s.gpu_hours for s in stages["sample"]) == pytest.approx(3 * sample_hours, rel=0.01)
    # 6P per token for the step, 2P for the reference pass, 2P for checkpointing's recompute
    train_flop = 10 * p * n * 2 * min(1024, prompt + response)
    train_hours = train_flop / (989e12 * 0.35) / 3600
    assert sum(s.gpu_hours for s in stages["train"]) == pytest.approx(3 * train_hours, rel=0.01)
    assert stages["train"][0].gpus == 8 and stages["train"][0].memory_gb < 80
    assert plan.warnings() == []
    text = "\n".join(plan_lines(plan))
    assert "87 model jobs on H100 (80 GB)" in text and "GPU-hours per round: 0:" in text


def test_a_train_job_over_four_nodes_counts_every_nodes_gpus():
    train = {**MISTRAL["resources"]["train"], "nodes": 4, "gpu": 8}
    config = {**MISTRAL, "resources": {**MISTRAL["resources"], "train": train}}
    four = by_stage(plan_cost(validate(config), None, H100))["train"]
    one = by_stage(plan_cost(validate(MISTRAL), None, H100))["train"]
    assert four[0].gpus == 32  # GPU-hours stay the work's; the wall time is 4 times shorter
    assert four[0].gpu_hours == pytest.approx(one[0].gpu_hours)
    assert four[0].seconds == pytest.approx(one[0].seconds / 4)
    assert four[0].memory_gb < one[0].memory_gb  # ZeRO-3 shards the state over 32 GPUs


def test_a_plan_that_cannot_fit_is_one_warning_line():
    config = {**GEMMA, "resources": {**GEMMA["resources"], "train": {"gpu": 1}}}
    plan = plan_cost(validate(config), None, {"SPPO_SLURM_GPU_MODEL": "l4"})
    [warning] = plan.warnings()
    assert warning.startswith("plan warning: a train job needs about 1")
    assert "its 1 GPU(s) have 24 GB each: it will not fit" in warning
    # resources.gpu_memory_gb says what an unnamed GPU holds
    roomy = {**config, "resources": {**config["resources"], "gpu_memory_gb": 192}}
    assert plan_cost(validate(roomy), None, {}).warnings() == []


def test_measured_rates_come_from_a_runs_job_records(tmp_path):
    run = tmp_path / "results"
    logs, timings = run / "iter1" / "logs", run / "iter1" / "timings"
    logs.mkdir(parents=True)
    timings.mkdir()
    (logs / "sample.log").write_text(
        "2026-12-06 INFO sppoflow.throughput: sample: 20000 generated tokens in 40.0 s: "
        "500.0 tokens/s (transformers on cpu, the model's load not counted)\n"
    )
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (timings / "sample.tsv").write_text(header + "50.0\t0:00:50\t1000\t0\t0\t0\t0\t0\t0\t90\n")
    (timings / "evaluate.tsv").write_text(header + "6.0\t0:00:06\t600\t0\t0\t0\t0\t0\t0\t9\n")
    config = validate({"rounds": 1})
    stages = by_stage(plan_cost(config, run, {}))
    [sample] = stages["sample"]
    # the work over the jobs' whole wall time: 20000 tokens in 50 s is 400 per job-second
    assert sample.rate_source == f"measured in {run} (400.0 tokens per job-second)"
    assert sample.seconds == pytest.approx(sample.amount / 400.0)
    [evaluate] = stages["evaluate"]
    assert evaluate.seconds == 6.0 and "mean job wall time" in evaluate.rate_source
    assert stages["train"][0].rate_source.startswith("assumed")


def test_the_workflow_warns_before_anything_runs(tmp_path):
    config = {**GEMMA, "resources": {**GEMMA["resources"], "train": {"gpu": 1}}}
    (tmp_path / "one-gpu.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "config").symlink_to(ROOT / "config")
    env = {"SPPO_SLURM_GPU_MODEL": "l4"}
    run = snakemake(tmp_path, "-n", "--configfile", "one-gpu.yaml", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    # printed when the Snakefile is read, before the plan's jobs are listed
    assert "plan warning: a train job needs about" in run.stderr and "Job stats" in run.stdout
    fits = snakemake(tmp_path, "-n", "--configfile", str(PAPER / "gemma-2-9b-it.yaml"), env=env)
    assert "plan warning" not in fits.stdout + fits.stderr  # 8 GPUs share ZeRO-3's states


def test_the_script_reads_configs_as_snakemake_does(tmp_path):
    run = run_script("plan_cost", "--configfile", PAPER / "mistral-7b-instruct-v0.2.yaml",
                     "--config", "rounds=1", "--gpu", "a100-40")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("plan: 1 round(s), 35 model jobs on A100-40 (40 GB)")
    (tmp_path / "b.yaml").write_text(json.dumps({"sample": {"k": 3}}))
    merged = load_configs([PAPER / "mistral-7b-instruct-v0.2.yaml", tmp_path / "b.yaml"])
    assert merged["sample"]["k"] == 3 and merged["sample"]["backend"] == "vllm"
    with pytest.raises(UserError, match=r"config file .*absent\.yaml not found"):
        load_configs([tmp_path / "absent.yaml"])


def test_the_gpo_plan_judges_each_response_once_with_gpm():
    """config/paper/gpo-llama-3-8b-instruct.yaml: GPM costs a pass per response (K), where
    PairRM costs one per ordered pair; its shape is known, so the plan has every stage's hours."""
    gpo = yaml.safe_load((PAPER / "gpo-llama-3-8b-instruct.yaml").read_text())
    llama = yaml.safe_load((PAPER / "llama-3-8b-instruct.yaml").read_text())
    plan = plan_cost(validate(gpo), None, H100)
    assert plan.warnings() == []
    score = by_stage(plan)["score"]
    gpm = KNOWN_SHAPES["general-preference/GPM-Gemma-2B"]
    n, k, prompt, response = 20000, 5, 150, 450
    per_pass = 2 * gpm.parameters * (prompt + response) + 12 * gpm.layers * 600**2 * gpm.hidden
    hours = n * k * per_pass / (989e12 * 0.30) / 3600
    assert sum(s.gpu_hours for s in score) == pytest.approx(3 * hours, rel=0.01)
    pairrm = by_stage(plan_cost(validate(llama), None, H100))["score"]
    assert sum(s.gpu_hours for s in score) != sum(s.gpu_hours for s in pairrm)


def test_inpo_pays_for_the_base_models_pass():
    """A training method that reads the base model's log-probabilities (INPO) costs one more
    forward pass per token than one that reads only the round's starting policy."""
    inpo = {**MISTRAL, "train": {**MISTRAL["train"], "loss": "inpo", "inpo_eta": 0.005,
                                 "inpo_tau": 0.005 / 3}}  # fmt: skip
    sppo = by_stage(plan_cost(validate(MISTRAL), None, H100))["train"]
    nash = by_stage(plan_cost(validate(inpo), None, H100))["train"]
    # 6 (step) + 2 (pi_t) + 2 (recompute) against 6 + 2 + 2 (pi_ref) + 2
    assert nash[0].gpu_hours == pytest.approx(sppo[0].gpu_hours * 12 / 10)


def test_a_judging_plan_cuts_a_pairwise_judges_hours_by_its_share_of_the_pairs():
    """The INPO paper plan at K = 8: every ordered pair is 56 per prompt, circular 16."""
    inpo = yaml.safe_load((PAPER / "inpo-llama-3-8b-sft.yaml").read_text())
    circular = {**inpo, "judge": {**inpo["judge"], "comparisons": "circular"}}
    every = sum(s.gpu_hours for s in by_stage(plan_cost(validate(inpo), None, H100))["score"])
    fewer = sum(s.gpu_hours for s in by_stage(plan_cost(validate(circular), None, H100))["score"])
    assert fewer == pytest.approx(every * 16 / 56)
