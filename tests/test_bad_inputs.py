"""Bad input, as a new user meets it: each case ends in one line that names the problem (an
``error:`` line of the stage, or a warning in its log where the run can go on), and none
leaves a partial output behind."""

import json
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from helpers import ROOT, error_line, run_script
from sppoflow.aggregate.win_rates import AggregateSettings, aggregate
from sppoflow.atomic import folder_written_whole
from sppoflow.errors import UserError
from sppoflow.prompts.pool import PoolSettings, build_pool
from sppoflow.score.judges.base import check_finite
from sppoflow.tables import SAMPLES, write_table
from sppoflow.train.data import build_examples
from sppoflow.train.round import check_schedule
from sppoflow.train.settings import TrainSettings
from tiny_model import tiny_reward_model


def samples_table(tokenizer, responses: dict[str, list[str]]) -> pd.DataFrame:
    rows = []
    for n, (prompt, texts) in enumerate(responses.items()):
        for idx, text in enumerate(texts):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            rows.append((f"p{n}", prompt, idx, text, ids, 5, len(ids), "stop"))
    return pd.DataFrame(rows, columns=list(SAMPLES.columns))


def no_outputs(folder, *names) -> bool:
    """Neither the outputs nor a partial file of theirs exist."""
    return not any(
        path.exists() for name in names for path in (folder / name, folder / f"{name}.partial")
    )


def test_a_judge_returning_nan_stops_the_score_stage(tmp_path, embedded_tokenizer):
    folder = tiny_reward_model(tmp_path / "rm", embedded_tokenizer)
    weights = LlamaForSequenceClassificationWeights(folder)
    weights["score.weight"] = torch.full_like(weights["score.weight"], float("nan"))
    weights.save()
    texts = {"How do I boil an egg?": ["Boil it.", "Nine minutes in boiling water."]}
    write_table(samples_table(embedded_tokenizer, texts), tmp_path / "samples.parquet", SAMPLES)
    run = run_script(
        "score", "--samples", tmp_path / "samples.parquet", "--out", tmp_path / "prefs.parquet",
        "--backend", "reward_model", "--model", folder, "--device", "cpu", "--dtype", "float32",
    )  # fmt: skip
    assert error_line(run) == (
        "error: judge reward_model returned nan for 2 of 2 rewards, first for the prompt "
        "'How do I boil an egg?': check its weights and precision (judge.dtype: float32)"
    )
    assert no_outputs(tmp_path, "prefs.parquet")


def test_an_infinite_pair_logit_is_refused():
    with pytest.raises(UserError, match=r"judge pairrm returned inf for 1 of 2 pair logits"):
        check_finite(np.array([0.5, np.inf]), "pairrm", ["a", "b"], "pair logits")


class LlamaForSequenceClassificationWeights(dict):
    """A saved model's safetensors, to edit and save back."""

    def __init__(self, folder):
        from safetensors.torch import load_file

        self.path = folder / "model.safetensors"
        super().__init__(load_file(self.path))

    def save(self):
        from safetensors.torch import save_file

        save_file(dict(self), self.path, metadata={"format": "pt"})


def test_an_empty_response_is_judged_and_counted(tmp_path, embedded_tokenizer):
    texts = {"Name a colour.": ["", "Blue."], "Name a fruit.": ["Apple.", "A pear."]}
    write_table(samples_table(embedded_tokenizer, texts), tmp_path / "samples.parquet", SAMPLES)
    run = run_script(
        "score", "--samples", tmp_path / "samples.parquet", "--out", tmp_path / "prefs.parquet",
        "--device", "cpu",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "1 of 4 responses are empty; the judge compares them as they are" in run.stderr
    assert len(pd.read_parquet(tmp_path / "prefs.parquet")) == 4


def test_a_response_without_tokens_cannot_be_trained(embedded_tokenizer):
    texts = {"Name a colour.": ["Red.", "Blue."]}
    samples = samples_table(embedded_tokenizer, texts)
    samples.at[1, "response_token_ids"] = []
    preferences = pd.DataFrame(
        {"prompt_id": ["p0", "p0"], "i": [0, 1], "j": [1, 0], "logit": [1.0, -1.0]}
    ).assign(prob=lambda f: 1 / (1 + np.exp(-f.logit)))
    result = aggregate(samples, preferences, AggregateSettings())
    with pytest.raises(UserError) as error:
        build_examples(embedded_tokenizer, samples, result.pairs, result.win_rates, TrainSettings())
    assert str(error.value) == (
        "samples: 1 response(s) have no tokens, not even a stop token (first: prompt p0, "
        "response 1): re-run the sample stage"
    )


def test_responses_that_all_tie_stop_the_aggregate_stage(tmp_path, embedded_tokenizer):
    texts = {"Say yes.": ["Yes.", "Yes."], "Say no.": ["No.", "No."]}
    write_table(samples_table(embedded_tokenizer, texts), tmp_path / "samples.parquet", SAMPLES)
    pd.DataFrame(
        {"prompt_id": ["p0", "p0", "p1", "p1"], "i": [0, 1, 0, 1], "j": [1, 0, 1, 0]}
    ).assign(logit=0.0, prob=0.5).to_parquet(tmp_path / "prefs.parquet")
    outputs = ("win_rates.parquet", "pairs.parquet", "stats.parquet")
    run = run_script(
        "aggregate", "--samples", tmp_path / "samples.parquet",
        "--preferences", tmp_path / "prefs.parquet", "--win-rates", tmp_path / outputs[0],
        "--pairs", tmp_path / outputs[1], "--stats", tmp_path / outputs[2],
    )  # fmt: skip
    assert error_line(run) == (
        "error: no training pair: the responses of all 2 prompts tie (win-rate spread 0); the "
        "judge cannot tell them apart, or the policy gives one answer K times"
    )
    assert no_outputs(tmp_path, *outputs)


def test_a_model_without_a_chat_template_stops_the_base_model_stage(tmp_path, tiny_model_dir):
    plain = tmp_path / "plain"
    plain.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.name != "chat_template.jinja":
            (plain / item.name).symlink_to(item)
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").unlink()
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    run = run_script("base_model", "--model", plain, "--out", tmp_path / "model")
    assert error_line(run) == (
        f"error: {plain} has no chat template; give one with policy.chat_template (a .jinja file)"
    )
    assert no_outputs(tmp_path, "model")


def test_a_long_prompt_is_cut_and_counted(embedded_tokenizer, caplog):
    long = "Summarise this: " + "the quick brown fox jumps over the lazy dog " * 30
    samples = samples_table(embedded_tokenizer, {long: ["Foxes jump.", "Dogs sleep."]})
    preferences = pd.DataFrame(
        {"prompt_id": ["p0", "p0"], "i": [0, 1], "j": [1, 0], "logit": [1.0, -1.0]}
    ).assign(prob=lambda f: 1 / (1 + np.exp(-f.logit)))
    result = aggregate(samples, preferences, AggregateSettings())
    settings = TrainSettings(max_prompt_length=64, max_length=128)
    with caplog.at_level(logging.WARNING):
        [example] = build_examples(
            embedded_tokenizer, samples, result.pairs, result.win_rates, settings
        )
    assert len(example["prompt_ids"]) == 64
    assert (
        "1 of 1 prompts were longer than train.max_prompt_length=64 tokens and lost their "
        "start; 0 responses were cut to fit train.max_length=128"
    ) in caplog.text


def test_a_tokenizer_of_another_model_is_named(tmp_path, embedded_tokenizer):
    folder = tmp_path / "small-vocab"
    config = LlamaConfig(
        vocab_size=256, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    embedded_tokenizer.save_pretrained(folder)
    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame({"prompt_id": ["p0"], "prompt": ["Hi"]}).to_parquet(prompts)
    run = run_script(
        "sample", "--model", folder, "--prompts", prompts, "--out", tmp_path / "samples.parquet",
        "--device", "cpu",
    )  # fmt: skip
    assert error_line(run) == (
        f"error: {folder}: the tokenizer has {len(embedded_tokenizer)} tokens but the model's "
        "embedding table has 256 rows: the tokenizer belongs to another model"
    )
    assert no_outputs(tmp_path, "samples.parquet")


def latin1_prompts(path):
    path.write_bytes('{"prompt": "Décris un café."}\n'.encode("latin-1"))
    return path


def test_a_prompt_file_that_is_not_utf8_is_named(tmp_path):
    source = latin1_prompts(tmp_path / "prompts.jsonl")
    run = run_script(
        "prompts", "pool", "--source", source, "--n-eval", "1",
        "--pool", tmp_path / "pool.parquet", "--eval", tmp_path / "eval.parquet",
    )  # fmt: skip
    assert error_line(run) == (
        f"error: {source}: not UTF-8 text (byte 0xe9 at offset 13); save it as UTF-8"
    )
    assert no_outputs(tmp_path, "pool.parquet", "eval.parquet")


def test_a_prompt_in_two_rounds_sources_is_trained_once_and_named(tmp_path, caplog):
    first, second = tmp_path / "round1.jsonl", tmp_path / "round2.jsonl"
    first.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["A?", "B?", "C?"]))
    second.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["b?", "D?", "E?"]))
    with caplog.at_level(logging.WARNING):
        pool = build_pool(None, [str(first), str(second)], None, PoolSettings(n_eval=1))
    assert f"1 prompt(s) of round 2's source {second} are also in an earlier round's " in (
        caplog.text
    )
    assert "(first: 'b?', in round 1's); each is trained in its first round only" in caplog.text
    train = pool[pool.split == "train"]
    assert train.prompt_id.is_unique and "b?" not in set(train.prompt)


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    frame = pd.DataFrame({"prompt_id": ["p0"], "prompt": ["Hi"]})

    def interrupted(table, where, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    from sppoflow.tables import PROMPTS

    monkeypatch.setattr(pq, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_table(frame, tmp_path / "prompts.parquet", PROMPTS)
    assert no_outputs(tmp_path, "prompts.parquet")
    with pytest.raises(KeyboardInterrupt), folder_written_whole(tmp_path / "model") as folder:
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt
    assert no_outputs(tmp_path, "model")


def test_a_round_of_one_warmup_step_stops_before_training(caplog):
    with pytest.raises(UserError) as error:
        check_schedule(1, TrainSettings(warmup_ratio=0.1))
    assert str(error.value) == (
        "train: the round has 1 optimizer step and it is a warmup step at learning rate 0 "
        "(warmup_ratio 0.1): the model would not change; train more prompts per round, use a "
        "smaller global batch, or set train.warmup_ratio: 0"
    )
    check_schedule(1, TrainSettings(warmup_ratio=0.0))  # no warmup: the one step trains
    with caplog.at_level(logging.WARNING):
        check_schedule(3, TrainSettings(warmup_ratio=1.0))
    assert "all 3 optimizer steps are warmup steps (warmup_ratio 1.0)" in caplog.text


def test_a_failed_jobs_explaining_line_reaches_the_console(tmp_path, run_snakemake):
    """The prompt_pool job fails on a non-UTF-8 file; Snakemake's console ends with the job's
    log line that says why, not only with its own report of the failure."""
    source = latin1_prompts(tmp_path / "prompts.jsonl")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"prompts": {"source": str(source)}}))
    run = run_snakemake(
        tmp_path, "--configfile", "config.yaml", "--cores", "1", "results/prompts/pool.parquet"
    )
    assert run.returncode != 0
    console = run.stdout + run.stderr
    expected = (
        "  prompt_pool (results/prompts/logs/prompt_pool.log): error: "
        f"{source}: not UTF-8 text (byte 0xe9 at offset 13); save it as UTF-8"
    )
    assert "Failed jobs, with the line of their log that says why:\n" + expected in console
    assert not (tmp_path / "results/prompts/pool.parquet").exists()
    assert (ROOT / "workflow/Snakefile").read_text().count("onerror:") == 1
