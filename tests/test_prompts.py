"""Prompt sources, cleaning, stable ids and the per-round split."""

import json
from pathlib import Path

import pandas as pd
import pytest

from sppoflow.errors import UserError
from sppoflow.prompts.pool import (
    PoolSettings,
    build_pool,
    prompt_id,
    read_source,
    round_prompts,
)

ROOT_PROMPTS = "config/prompts/instructions.jsonl"


def write_jsonl(path, prompts, column="prompt"):
    path.write_text("".join(json.dumps({column: p}) + "\n" for p in prompts))
    return str(path)


@pytest.fixture
def prompts_file(tmp_path):
    texts = [f"Question number {n}: why?" for n in range(40)]
    texts += ["", "   ", "Question number 3: why?", "question  NUMBER 3:   why?"]
    return write_jsonl(tmp_path / "p.jsonl", texts)


def test_shipped_prompt_set_is_large_varied_and_clean():

    path = Path(__file__).resolve().parents[1] / ROOT_PROMPTS
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) >= 300
    assert len({prompt_id(p) for p in prompts}) == len(prompts)
    assert len({r["category"] for r in rows}) >= 10
    assert any("None" in p for p in prompts)


def test_pool_drops_empty_and_duplicates_and_is_deterministic(prompts_file):
    settings = PoolSettings(n_eval=10, seed=3)
    pool = build_pool(prompts_file, [], None, settings)
    assert len(pool) == 40 and pool["prompt_id"].is_unique
    assert (pool["split"] == "eval").sum() == 10
    again = build_pool(prompts_file, [], None, settings)
    pd.testing.assert_frame_equal(pool, again)
    other_seed = build_pool(prompts_file, [], None, PoolSettings(n_eval=10, seed=4))
    assert set(other_seed[other_seed.split == "eval"].prompt_id) != set(
        pool[pool.split == "eval"].prompt_id
    )


def test_split_does_not_depend_on_input_order(tmp_path, prompts_file):
    texts = [json.loads(line)["prompt"] for line in Path(prompts_file).read_text().splitlines()]
    reversed_file = write_jsonl(tmp_path / "r.jsonl", texts[::-1])
    a = build_pool(prompts_file, [], None, PoolSettings(n_eval=10))
    b = build_pool(reversed_file, [], None, PoolSettings(n_eval=10))
    assert set(a[a.split == "eval"].prompt_id) == set(b[b.split == "eval"].prompt_id)


def test_rounds_are_disjoint_and_independent_of_the_number_of_rounds(prompts_file):
    pool = build_pool(prompts_file, [], None, PoolSettings(n_eval=10))
    rounds = [round_prompts(pool, r, 10) for r in (1, 2, 3)]
    ids = [set(r.prompt_id) for r in rounds]
    evals = set(pool[pool.split == "eval"].prompt_id)
    assert all(len(s) == 10 for s in ids)
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert not any(s & evals for s in ids)
    with pytest.raises(UserError, match="round 4 needs prompts 31-40 of the shared pool"):
        round_prompts(pool, 4, 10)


def test_prompt_ids_are_stable_and_normalised():
    assert prompt_id("Hello  World") == prompt_id(" hello world ")
    assert prompt_id("Hello World") != prompt_id("Hello World!")
    assert (
        prompt_id("Hello World")
        == "p" + __import__("hashlib").sha256(b"hello world").hexdigest()[:16]
    )


def test_per_round_sources_are_used_one_per_round(tmp_path):
    sources = [
        write_jsonl(tmp_path / f"r{r}.jsonl", [f"round {r} prompt {n}" for n in range(12)])
        for r in (1, 2)
    ]
    pool = build_pool(None, sources, None, PoolSettings(n_eval=4))
    first = round_prompts(pool, 1, None)
    second = round_prompts(pool, 2, None)
    assert all(p.startswith("round 1") for p in first.prompt)
    assert all(p.startswith("round 2") for p in second.prompt)
    assert len(first) + len(second) == 24 - 4
    with pytest.raises(UserError, match="lists 2 sources but round 3"):
        round_prompts(pool, 3, None)


def test_eval_source_is_never_trained_on(tmp_path, prompts_file):
    eval_file = write_jsonl(tmp_path / "e.jsonl", ["Question number 1: why?", "A new one?"])
    pool = build_pool(prompts_file, [], eval_file, PoolSettings(n_eval=10))
    evals = pool[pool.split == "eval"]
    assert len(evals) == 2
    assert not set(evals.prompt_id) & set(pool[pool.split == "train"].prompt_id)


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_other_file_types_and_a_custom_column(tmp_path, suffix):
    frame = pd.DataFrame({"instruction": ["a?", "b?", "c?"], "other": [1, 2, 3]})
    path = tmp_path / f"p{suffix}"
    {
        ".json": lambda: frame.to_json(path, orient="records"),
        ".csv": lambda: frame.to_csv(path, index=False),
        ".parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    assert read_source(str(path), "instruction") == ["a?", "b?", "c?"]


def test_a_local_dataset_folder_loads_through_datasets(tmp_path):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"prompt": ["x?", "y?"]}).save_to_disk(str(folder))
    assert read_source(str(folder), "prompt") == ["x?", "y?"]
    data_dir = tmp_path / "data_files"
    data_dir.mkdir()
    write_jsonl(data_dir / "train.jsonl", ["from files?"])
    assert read_source(str(data_dir), "prompt") == ["from files?"]


def test_chat_format_cells_give_the_user_message(tmp_path):
    path = tmp_path / "chat.parquet"
    pd.DataFrame(
        {"messages": [[{"role": "user", "content": "hi?"}, {"role": "assistant", "content": "yo"}]]}
    ).to_parquet(path)
    assert read_source(str(path), "messages") == ["hi?"]


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"prompt file .*nope.jsonl not found"):
        read_source(str(tmp_path / "nope.jsonl"), "prompt")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(UserError, match="prompt file is empty"):
        read_source(str(path), "prompt")


def test_file_of_blank_prompts(tmp_path):
    path = write_jsonl(tmp_path / "blank.jsonl", ["", "  "])
    with pytest.raises(UserError, match="no non-empty prompts"):
        build_pool(path, [], None, PoolSettings(n_eval=1))


def test_missing_column(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", ["a?"], column="question")
    with pytest.raises(UserError, match=r"no column 'prompt' \(columns: question\)"):
        read_source(path, "prompt")


def test_too_many_eval_prompts(prompts_file):
    with pytest.raises(UserError, match="n_eval=40 leaves no training prompts"):
        build_pool(prompts_file, [], None, PoolSettings(n_eval=40))


def test_unreachable_dataset_id_is_one_clear_line():
    with pytest.raises(UserError, match="cannot load prompt dataset sppo-test/absent") as error:
        read_source("sppo-test/absent", "prompt")
    assert "\n" not in str(error.value)
