"""Data-parallel shards: N shard jobs together write exactly the rows of one job, and the
gather refuses shards that overlap or leave rows out."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from helpers import SCRIPTS
from sppoflow.errors import UserError
from sppoflow.runtime.shards import check_shard, take_shard
from sppoflow.sample.settings import SamplingSettings
from sppoflow.sample.transformers_backend import generate
from sppoflow.score.judges import JudgeSettings, build_judge
from sppoflow.score.preferences import score_samples
from sppoflow.tables import PREFERENCES, PROMPTS, SAMPLES, write_table

PROMPTS_TABLE = pd.DataFrame(
    {
        "prompt_id": [f"p{n}" for n in range(7)],
        "prompt": [
            "Hi?",
            "Name a colour.",
            "Describe, in a few careful sentences, how a bicycle gear system works.",
            "Is None a value?",
            "Write a haiku about rain on a tin roof in late autumn.",
            "What is 2 + 2?",
            "Give three tips for learning to cook at home on a small budget.",
        ],
    }
)


def sampling(**overrides):
    # top_p 1: a random tiny model's distribution is flat, so its nucleus would be nearly the
    # whole vocabulary, a full sort at every step; test_decoding.py tests the nucleus
    base = dict(k=3, max_new_tokens=6, batch_size=4, seed=5, dtype="float32", device="cpu",
                top_p=1.0)  # fmt: skip
    return SamplingSettings(**{**base, **overrides})


def test_take_shard_is_round_robin_and_checks_its_arguments():
    assert take_shard(list(range(7)), 1, 3) == [1, 4]
    assert take_shard(list(range(2)), 2, 3) == []
    with pytest.raises(UserError, match="--shard must be between 0 and 2, got 3"):
        check_shard(3, 3)
    with pytest.raises(UserError, match="--shards must be 1 or more"):
        check_shard(0, 0)


@pytest.fixture(scope="module")
def one_job(tiny_model):
    """The samples one job writes for the prompts, against which shards are compared."""
    model, tokenizer = tiny_model
    return generate(model, tokenizer, PROMPTS_TABLE, sampling())


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_sample_shards_together_equal_one_job(tiny_model, one_job, shards):
    model, tokenizer = tiny_model
    one = one_job.copy()
    parts = [
        generate(model, tokenizer, PROMPTS_TABLE, sampling(), shard=s, shards=shards)
        for s in range(shards)
    ]
    assert sum(len(p) for p in parts) == len(one) == 7 * 3
    joined = pd.concat([p for p in parts if len(p)]).sort_values(["prompt_id", "response_idx"])
    pd.testing.assert_frame_equal(joined.reset_index(drop=True), one, check_exact=True)


@pytest.fixture(scope="module")
def judge():
    return build_judge(JudgeSettings(device="cpu", dtype="float32", temperature=0.05))


def samples_table():
    rows = [
        (f"q{n}", f"Question {n}: how do plants use light?", k, text)
        for n in range(5)
        for k, text in enumerate(["Light drives photosynthesis." * (n + 1), "No idea.", "Stocks"])
    ]
    return pd.DataFrame(rows, columns=["prompt_id", "prompt", "response_idx", "response"])


@pytest.mark.parametrize("shards", [1, 3])
def test_score_shards_together_equal_one_job_bit_for_bit(judge, shards):
    samples = samples_table()
    one = score_samples(judge, samples, prompts_per_chunk=2)
    parts = [score_samples(judge, samples, 2, shard=s, shards=shards) for s in range(shards)]
    joined = pd.concat(parts).sort_values(["prompt_id", "i", "j"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, one, check_exact=True)
    # more shards than chunks: the spare shard writes an empty table with the columns
    empty = score_samples(judge, samples, prompts_per_chunk=5, shard=1, shards=2)
    assert empty.empty and list(empty.columns) == list(PREFERENCES.columns)


def test_chunks_change_batches_not_the_pairs(judge):
    samples = samples_table()
    whole = score_samples(judge, samples, prompts_per_chunk=256)
    chunked = score_samples(judge, samples, prompts_per_chunk=1)
    assert np.allclose(whole.logit, chunked.logit, atol=1e-4)
    with pytest.raises(UserError, match="prompts_per_chunk must be 1 or more"):
        score_samples(judge, samples, prompts_per_chunk=0)


def gather(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "gather.py"), *map(str, args)],
        capture_output=True,
        text=True,
    )


def test_gather_joins_sample_shards_and_refuses_missing_or_doubled_rows(
    tiny_model, one_job, tmp_path
):
    model, tokenizer = tiny_model
    prompts = tmp_path / "prompts.parquet"
    write_table(PROMPTS_TABLE, prompts, PROMPTS)
    shards = []
    for s in range(3):
        part = generate(model, tokenizer, PROMPTS_TABLE, sampling(), shard=s, shards=3)
        shards.append(tmp_path / f"samples.{s}-of-3.parquet")
        write_table(part, shards[-1], SAMPLES)
    out = tmp_path / "samples.parquet"
    done = gather("samples", *shards, "--prompts", prompts, "--k", 3, "--out", out)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), one_job)
    lost = gather("samples", *shards[:2], "--prompts", prompts, "--k", 3, "--out", out)
    assert lost.returncode == 2 and "a shard is missing or stale" in lost.stderr
    doubled = gather("samples", *shards, shards[0], "--prompts", prompts, "--k", 3, "--out", out)
    assert doubled.returncode == 2 and "appear in more than one shard" in doubled.stderr


def test_gather_checks_every_ordered_pair_of_preferences(judge, tmp_path):
    samples = samples_table()
    for column in ("response_token_ids", "prompt_tokens", "response_tokens", "finish_reason"):
        samples[column] = [[1]] * len(samples) if column == "response_token_ids" else 1
    samples_file = tmp_path / "samples.parquet"
    write_table(samples, samples_file, SAMPLES)
    shards = []
    for s in range(2):
        shards.append(tmp_path / f"preferences.{s}-of-2.parquet")
        write_table(score_samples(judge, samples, 2, shard=s, shards=2), shards[-1], PREFERENCES)
    out = tmp_path / "preferences.parquet"
    done = gather("preferences", *shards, "--samples", samples_file, "--out", out)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(out)) == 5 * 3 * 2
    lost = gather("preferences", shards[1], "--samples", samples_file, "--out", out)
    assert lost.returncode == 2 and "lack 18 of 30 preferences rows" in lost.stderr
    # a judging plan: the shards judged fewer pairs, and the gather checks those
    for s, path in enumerate(shards):
        anchored = score_samples(judge, samples, 2, shard=s, shards=2, comparisons="anchor")
        write_table(anchored, path, PREFERENCES)
    planned = gather("preferences", *shards, "--samples", samples_file, "--out", out,
                     "--comparisons", "anchor")  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert len(pd.read_parquet(out)) == 5 * 2 * (3 - 1)
    unplanned = gather("preferences", *shards, "--samples", samples_file, "--out", out)
    assert unplanned.returncode == 2 and "lack 10 of 30 preferences rows" in unplanned.stderr
