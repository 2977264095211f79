"""The Snakemake workflow: the job graph of a dry run, lint, and a real 2-round run on a tiny
random model in a temp directory."""

import json
import re
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest
import yaml

from bad_configs import BAD_CONFIGS
from helpers import BIN, ROOT, planned_jobs, snakemake
from question_set_tools import MT_BENCH_QUESTIONS, write_jsonl
from sppoflow.tables import (
    EVAL_JUDGEMENTS,
    PAIRS,
    PREFERENCES,
    PROMPT_POOL,
    PROMPTS,
    RESPONSE_WIN_RATES,
    SAMPLES,
    read_table,
)


@pytest.fixture
def default_workdir(tmp_path):
    (tmp_path / "config").symlink_to(ROOT / "config")
    return tmp_path


def test_planning_the_workflow_does_not_import_torch(default_workdir):
    """Parsing the Snakefile checks the config (train settings included) without torch or
    transformers: a dry run or a cluster's submission host stays light."""
    run = snakemake(default_workdir, "-n", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert run.returncode == 0, run.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "sppoflow.train.settings" in imported  # the check ran, in this process
    assert not imported & {"torch", "transformers"}


def test_dry_run_of_three_rounds_plans_the_sppo_graph(default_workdir):
    run = snakemake(default_workdir, "-n", "--config", "rounds=3")
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout + run.stderr)
    counts = Counter(rule for rule, _, _ in jobs)
    assert counts == {
        "fetch_model": 2,
        "base_model": 1,
        "prompt_pool": 1,
        "round_prompts": 3,
        "sample": 3,
        "score": 3,
        "aggregate": 3,
        "train": 3,
        "eval_generate": 4,
        "evaluate": 3,
        "summary": 1,
        "round_figures": 3,
        "report_figures": 1,
        "export_alpaca_eval": 4,
        "duckdb_views": 1,
        "throughput_table": 1,
        "all": 1,
    }
    producer = {out: rule for rule, _, outs in jobs for out in outs}

    def inputs_of(rule, output):
        [(ins)] = [ins for r, ins, outs in jobs if r == rule and output in outs]
        return {i: producer.get(i) for i in ins}

    # round t samples from, and trains, round t-1's model; round 1 starts from the base model
    assert (
        inputs_of("sample", "results/iter1/samples.parquet")["results/iter0/model"] == "base_model"
    )
    for it in (2, 3):
        sample_in = inputs_of("sample", f"results/iter{it}/samples.parquet")
        assert sample_in[f"results/iter{it - 1}/model"] == "train"
        assert sample_in[f"results/prompts/train_iter{it}.parquet"] == "round_prompts"
        train_in = inputs_of("train", f"results/iter{it}/model")
        assert train_in[f"results/iter{it - 1}/model"] == "train"
        assert train_in[f"results/iter{it}/pairs.parquet"] == "aggregate"
    # hub models are fetched (on the submit host) before the jobs that read them
    assert inputs_of("base_model", "results/iter0/model") == {
        "results/hub/policy.json": "fetch_model"
    }
    assert inputs_of("score", "results/iter2/preferences.parquet")["results/hub/judge.json"] == (
        "fetch_model"
    )
    evaluate_in = inputs_of("evaluate", "results/iter3/eval/metrics.json")
    assert evaluate_in["results/iter0/eval/responses.parquet"] == "eval_generate"
    assert evaluate_in["results/iter2/eval/responses.parquet"] == "eval_generate"
    summary_in = inputs_of("summary", "results/summary/metrics.tsv")
    assert {f"results/iter{it}/eval/metrics.json" for it in (1, 2, 3)} <= set(summary_in)


# Every bad config's message is checked in-process (tests/test_config.py); these go through
# the snakemake command line too, one of each kind of check: the schema, a path, a rule that
# spans keys, the vLLM environment's python.
BAD_CONFIGS_BY_KIND = [BAD_CONFIGS[i] for i in (0, 1, 8, -1)]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS_BY_KIND)
def test_bad_config_stops_the_workflow_before_any_job(default_workdir, config, message):
    (default_workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(default_workdir, "-n", "--configfile", "bad.yaml")
    assert run.returncode != 0
    assert message in run.stderr + run.stdout
    assert not (default_workdir / "results").exists()


def test_vllm_jobs_run_the_python_of_the_vllm_environment(default_workdir):
    python = default_workdir / "vllm-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    sample = f"{{backend: vllm, vllm_python: {python}}}"
    run = snakemake(default_workdir, "-n", "-p", "--config", "rounds=1", f"sample={sample}")
    assert run.returncode == 0, run.stderr
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "sample.py" in line]
    assert len(lines) == 3  # round 1's samples, rounds 0 and 1's evaluation responses
    for line in lines:
        assert f"-- {python} " in line and "--backend vllm" in line, line
        assert "--vllm-python" not in line


def test_question_set_answers_are_planned_for_every_round_of_every_method(default_workdir):
    """evaluate.question_sets set: each round's model (round 0 once) answers each question set on
    the evaluation's GPUs, with the vLLM environment's python where the backend is vLLM, and
    the exports are local; a question file that is not there stops the plan."""
    write_jsonl(default_workdir / "mt.jsonl", MT_BENCH_QUESTIONS)
    python = default_workdir / "vllm-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    question_sets = "{question_sets: {mt_bench: mt.jsonl, lm_eval_tasks: [leaderboard]}}"
    sample = f"sample={{backend: vllm, vllm_python: {python}}}"
    run = snakemake(default_workdir, "-n", "-p", "--configfile", str(ROOT / "config/compare.yaml"),
                    "--config", "rounds=2", f"evaluate={question_sets}", sample)  # fmt: skip
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout + run.stderr)
    counts = Counter(rule for rule, _, _ in jobs)
    # rounds 0 (the base model, once) and 1, 2 of each of the 4 methods
    assert counts["question_set_answers"] == counts["export_question_set_answers"] == 9
    assert counts["export_lm_eval"] == 9
    outputs = {out for rule, _, outs in jobs for out in outs if rule.startswith("export_")}
    assert "results/export/mt_bench/model_answer/base-iter0.jsonl" in outputs
    assert "results/export/mt_bench/model_answer/dpo-iter2.jsonl" in outputs  # one folder
    assert "results/export/methods/ipo/lm_eval_iter1.sh" in outputs
    lines = [
        line for line in (run.stdout + run.stderr).splitlines() if "question_set_answers.py" in line
    ]
    assert len(lines) == 9 and all(f"-- {python} " in line for line in lines)
    assert all("--sampling conventional" in line and "--temperature" not in line for line in lines)
    broken = "evaluate={question_sets: {mt_bench: x}}"
    missing = snakemake(default_workdir, "-n", "--config", broken)
    assert missing.returncode != 0
    assert (
        "config error: evaluate.question_sets.mt_bench: x does not exist"
        in missing.stdout + missing.stderr
    )


def test_rounds_from_the_command_line_are_validated(default_workdir):
    run = snakemake(default_workdir, "-n", "--config", "rounds=0")
    assert run.returncode != 0
    assert "config error: rounds: 0 is less than the minimum of 1" in run.stderr + run.stdout


def test_lint_is_clean(default_workdir):
    run = snakemake(default_workdir, "--lint")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Congratulations" in run.stdout + run.stderr


def test_rule_files_are_snakefmt_clean():
    run = subprocess.run(
        [str(BIN / "snakefmt"), "--check", str(ROOT / "workflow")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_rule_that_runs_a_job_times_it():
    """benchmark: on every rule (but the target rule all), so that the timing table
    (benchmarks/stages.py) can read each job's time."""
    text = "".join(p.read_text() for p in sorted((ROOT / "workflow").rglob("*.smk")))
    rules = re.split(r"(?m)^[ \t]*rule (?=\w+:)", text)[1:]
    untimed = [r.split(":")[0] for r in rules if "benchmark:" not in r]
    assert not untimed, untimed


def test_two_rounds_on_a_tiny_model_then_nothing_to_do_then_one_more_round(tiny_run):
    tmp_path, config = tiny_run
    results = tmp_path / "results"

    pool = read_table(results / "prompts/pool.parquet", PROMPT_POOL)
    eval_prompts = read_table(results / "prompts/eval.parquet", PROMPTS)
    assert len(eval_prompts) == 6 and len(pool) == 40  # .test/data/prompts.jsonl
    rounds = [read_table(results / f"prompts/train_iter{it}.parquet", PROMPTS) for it in (1, 2)]
    assert not set(rounds[0].prompt_id) & set(rounds[1].prompt_id)

    assert (results / "iter0/model/model.safetensors").is_file()
    for it in (1, 2):
        d = results / f"iter{it}"
        samples = read_table(d / "samples.parquet", SAMPLES)
        assert len(samples) == 6 * 3
        assert set(samples.prompt_id) == set(rounds[it - 1].prompt_id)
        assert len(read_table(d / "preferences.parquet", PREFERENCES)) == 6 * 3 * 2
        assert len(read_table(d / "response_win_rates.parquet", RESPONSE_WIN_RATES)) == 18
        pairs = read_table(d / "pairs.parquet", PAIRS)
        assert 0 < len(pairs) <= 6
        stats = pd.read_parquet(d / "aggregate_stats.parquet")
        assert stats["round"].iloc[0] == it and stats["n_pairs"].iloc[0] == len(pairs)
        assert (d / "model/model.safetensors").is_file()
        assert (d / "model/tokenizer.json").is_file() and (
            d / "model/chat_template.jinja"
        ).is_file()
        log = pd.read_csv(d / "train_log.csv")
        assert {"loss", "learning_rate", "grad_norm", "logratio_winner", "target_loser"} <= set(log)
        assert not (d / "train_state").exists()
        read_table(d / "eval/responses.parquet", SAMPLES)
        judgements = read_table(d / "eval/judgements.parquet", EVAL_JUDGEMENTS)
        assert set(judgements.opponent) == {"base", "previous"}
        metrics = json.loads((d / "eval/metrics.json").read_text())
        for opponent in ("vs_base", "vs_previous"):
            m = metrics[opponent]
            assert m["win_rate_ci_low"] <= m["win_rate"] <= m["win_rate_ci_high"]
            assert m["n_prompts"] == 6
        for rule in ("sample", "score", "aggregate", "train", "eval_generate", "evaluate"):
            assert (d / f"logs/{rule}.log").is_file()
            assert (d / f"timings/{rule}.tsv").is_file()
    read_table(results / "iter0/eval/responses.parquet", SAMPLES)
    summary = pd.read_csv(results / "summary/metrics.tsv", sep="\t")
    assert summary["round"].tolist() == [1, 2]
    assert {
        "win_rate_vs_base",
        "win_rate_vs_base_ci_low",
        "win_rate_vs_previous",
        "mean_response_tokens",
        "n_pairs",
        "train_loss_last",
    } <= set(summary)
    rewards = pd.read_csv(results / "summary/judge_rewards.tsv", sep="\t")
    assert {"corr_reward_length", "corr_reward_overlap"} <= set(rewards)

    again = snakemake(tmp_path, "--cores", "2")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # where a job runs, how big it is and how fast it goes never re-run it
    bigger = {
        **config,
        "resources": {"train": {"gpu": 2, "mem_mb": 64000, "runtime": 60}},
        "judge": {**config["judge"], "batch_size": 7, "max_batch_tokens": 512, "device": "auto"},
        "train": {**config["train"], "checkpoint_steps": 2, "gradient_checkpointing": True},
    }
    (tmp_path / "bigger.yaml").write_text(yaml.safe_dump(bigger))
    moved = snakemake(tmp_path, "-n", "--configfile", "bigger.yaml", "--resources", "gpu=4")
    assert moved.returncode == 0 and "Nothing to be done" in moved.stdout + moved.stderr
    # a training setting re-runs training from round 1 on, but not round 1's sampling
    changed = {**config, "train": {**config["train"], "learning_rate": 2.0e-3}}
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    replan = snakemake(tmp_path, "-n", "--configfile", "changed.yaml")
    assert replan.returncode == 0, replan.stderr
    rerun = Counter(rule for rule, _, _ in planned_jobs(replan.stdout + replan.stderr))
    assert rerun["train"] == 2 and rerun["sample"] == 1 and "prompt_pool" not in rerun
    assert "Params have changed since last execution" in replan.stdout + replan.stderr

    more = snakemake(tmp_path, "--config", "rounds=3", "-n")
    assert more.returncode == 0, more.stderr
    jobs = planned_jobs(more.stdout + more.stderr)
    assert Counter(rule for rule, _, _ in jobs) == {
        "round_prompts": 1,
        "sample": 1,
        "score": 1,
        "aggregate": 1,
        "train": 1,
        "eval_generate": 1,
        "evaluate": 1,
        "summary": 1,
        "round_figures": 1,
        "report_figures": 1,
        "export_alpaca_eval": 1,
        "duckdb_views": 1,
        "throughput_table": 1,
        "all": 1,
    }
    across_rounds = ("summary", "report_figures", "duckdb_views", "throughput_table", "all")
    assert all(
        "iter3" in " ".join(outs) or rule in across_rounds or "train_iter3" in outs[0]
        for rule, _, outs in jobs
    )


def test_no_job_of_the_run_warns_of_a_deprecated_call(tiny_run):
    """Every job's log (torch, transformers, pandas, DuckDB run inside them): no FutureWarning,
    the category libraries warn their users with (shown by default, as for a cache passed to
    transformers as past_key_values). DeprecationWarnings, meant for library authors, are
    hidden outside __main__; tests/test_decoding.py and tests/test_training.py turn both into
    errors around the calls they are known for."""
    folder, _ = tiny_run
    logs = sorted((folder / "results").rglob("logs/*.log"))
    assert len(logs) > 20
    warned = [
        f"{log.relative_to(folder)}: {line.strip()}"
        for log in logs
        for line in log.read_text(errors="replace").splitlines()
        if "FutureWarning" in line
    ]
    assert warned == []


def test_every_path_in_a_rule_shell_line_is_quoted():
    """{input}, {output} and {log} (whole or by name) go into shell lines with :q, so that a
    folder of any name is one shell word (tests/test_folder_names.py runs and plans it)."""
    unquoted = [
        f"{path.name}: {found}"
        for path in sorted((ROOT / "workflow" / "rules").glob("*.smk"))
        for found in re.findall(r"\{(?:input|output|log)(?:\.\w+)?\}", path.read_text())
    ]
    assert unquoted == []


@pytest.mark.parametrize(
    "paper", ["mistral-7b-instruct-v0.2", "llama-3-8b-instruct", "gemma-2-9b-it"]
)
def test_paper_configs_plan_every_round_with_pairrm(tmp_path, paper):
    configfile = ROOT / "config" / "paper" / f"{paper}.yaml"
    run = snakemake(tmp_path, "-n", "-p", "--configfile", str(configfile), "--config", "rounds=3")
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    jobs = planned_jobs(output)
    counts = Counter(rule for rule, _, _ in jobs)
    assert counts["score"] == counts["sample"] == 3 * 8  # 8 shards per round, as the authors
    assert counts["gather_preferences"] == 3 and counts["train"] == 3
    scored = re.findall(r"scripts/score\.py .*?--backend (\S+) --model (\S+)", output)
    assert len(scored) == 3 * 8  # the score shards of rounds 1-3
    assert set(scored) == {("pairrm", "llm-blender/PairRM-hf")}
    evaluated = re.findall(r"scripts/evaluate\.py .*?--judges '(\{.*?\}\})'", output)
    assert len(evaluated) == 3  # evaluate of rounds 1-3, by the training judge alone
    for judges in map(json.loads, evaluated):
        assert list(judges) == ["training"]
        assert judges["training"]["backend"] == "pairrm"
        assert judges["training"]["model"] == "llm-blender/PairRM-hf"
    assert "--temperature 0.05" not in output  # nothing leaks in from the CPU demo's config
    assert "--per-round UCLA-AGI/data-mistral-7b-instruct-sppo-iter1" in output


def test_the_gpo_config_plans_every_round_with_gpm(tmp_path):
    """config/paper/gpo-llama-3-8b-instruct.yaml: SPPO with GPM as the GPM authors ran it."""
    configfile = ROOT / "config" / "paper" / "gpo-llama-3-8b-instruct.yaml"
    run = snakemake(tmp_path, "-n", "-p", "--configfile", str(configfile), "--config", "rounds=3")
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    scored = re.findall(r"scripts/score\.py .*?--backend (\S+) --model (\S+)", output)
    assert len(scored) == 3 * 8
    assert set(scored) == {("gpm", "general-preference/GPM-Gemma-2B")}
    assert len(re.findall(r"scripts/score\.py .*?--temperature 0\.05", output)) == 3 * 8
    trained = re.findall(r"scripts/train\.py .*?--eta (\S+)", output)
    assert trained == ["800.0"] * 3 or trained == ["800"] * 3


def test_the_inpo_config_plans_every_round_with_the_base_model_and_the_pair_preference_model(
    tmp_path,
):
    """config/paper/inpo-llama-3-8b-sft.yaml: every round trains INPO with round 0's model as
    its anchor, judged by RLHFlow's pairwise model through its template."""
    configfile = ROOT / "config" / "paper" / "inpo-llama-3-8b-sft.yaml"
    (tmp_path / "config").symlink_to(ROOT / "config")  # the template's path is the project's
    run = snakemake(tmp_path, "-n", "-p", "--configfile", str(configfile), "--config", "rounds=3")
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    trained = re.findall(
        r"scripts/train\.py --model (\S+) --base-model (\S+) .*?--loss (\S+)", output
    )
    assert sorted(trained) == [
        (f"results/iter{t}/model", "results/iter0/model", "inpo") for t in range(3)
    ]
    assert len(re.findall(r"--inpo-eta 0\.005 --inpo-tau 0\.00166", output)) == 3
    scored = re.findall(r"scripts/score\.py .*?--backend (\S+) --model (\S+)", output)
    assert set(scored) == {("llm_judge", "RLHFlow/pair-preference-model-LLaMA3-8B")}
    assert len(scored) == 3 * 8 and "rlhflow-pair-pm.txt" in output
