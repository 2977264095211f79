"""The streamed score stage: chunk by chunk from the samples file, resumable, the same rows."""

import pandas as pd
import pytest

from sppoflow.errors import UserError
from sppoflow.score.judges import JudgeSettings, build_judge
from sppoflow.score.preferences import score_file
from sppoflow.tables import SAMPLES

WORDS = [
    "bread",
    "oven",
    "flour",
    "river",
    "stone",
    "music",
    "garden",
    "window",
    "letter",
    "coffee",
    "winter",
    "road",
]


@pytest.fixture(scope="module")
def judge():
    return build_judge(JudgeSettings(device="cpu", dtype="float32", temperature=0.05))


def samples_file(folder, n_prompts=7, k=3, shuffle=False):
    rows = []
    for p in range(n_prompts):
        for r in range(k):
            words = [WORDS[(p * 5 + r * 3 + n) % len(WORDS)] for n in range(3 + r + p % 4)]
            rows.append(
                {
                    "prompt_id": f"p{p:02d}",
                    "prompt": f"Tell me about {WORDS[p % len(WORDS)]}.",
                    "response_idx": r,
                    "response": " ".join(words),
                    "response_token_ids": [1, 2, 3],
                    "prompt_tokens": 5,
                    "response_tokens": 3,
                    "finish_reason": "stop",
                }
            )
    frame = pd.DataFrame(rows)
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=0)
    path = folder / "samples.parquet"
    frame.to_parquet(path, index=False)
    return path


class CountingJudge:
    """The judge, counting the chunks it is given; it can fail on the n-th one."""

    def __init__(self, judge, fail_on=None):
        self.judge, self.fail_on, self.calls = judge, fail_on, 0

    def planned_logits(self, prompts, responses, pairs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("node lost")
        return self.judge.planned_logits(prompts, responses, pairs)

    def log_compute(self, work, seconds):
        self.judge.log_compute(work, seconds)


def test_the_stream_writes_what_one_chunk_of_everything_writes(judge, tmp_path):
    path = samples_file(tmp_path, shuffle=True)  # rows in any order: the stream sorts them
    score_file(lambda: judge, path, tmp_path / "one.parquet", prompts_per_chunk=1000)
    score_file(lambda: judge, path, tmp_path / "chunked.parquet", prompts_per_chunk=2)
    one, chunked = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in ("one", "chunked"))
    assert len(one) == 7 * 3 * 2
    assert one.columns.tolist() == ["prompt_id", "i", "j", "logit", "prob"]
    assert one[["prompt_id", "i", "j"]].equals(chunked[["prompt_id", "i", "j"]])
    # the relevance judge embeds each text on its own: batch-mates change the last bits only
    assert (one.logit - chunked.logit).abs().max() < 1e-4
    assert not (tmp_path / "chunked.parquet.parts").exists()  # parts are removed at the end


def test_an_interrupted_run_resumes_with_the_missing_chunks_only(judge, tmp_path):
    path = samples_file(tmp_path)
    straight = tmp_path / "straight.parquet"
    score_file(lambda: judge, path, straight, prompts_per_chunk=2, run_id="a")
    out = tmp_path / "preferences.parquet"
    failing = CountingJudge(judge, fail_on=3)
    with pytest.raises(RuntimeError, match="node lost"):
        score_file(lambda: failing, path, out, prompts_per_chunk=2, run_id="a")
    assert len(list((tmp_path / "preferences.parquet.parts").glob("chunk-*"))) == 2
    assert not out.exists()
    resumed = CountingJudge(judge)
    score_file(lambda: resumed, path, out, prompts_per_chunk=2, run_id="a")
    assert resumed.calls == 2  # 4 chunks of 7 prompts, 2 judged before
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(straight))


def test_parts_of_a_run_with_other_inputs_are_not_reused(judge, tmp_path):
    path = samples_file(tmp_path)
    out = tmp_path / "preferences.parquet"
    with pytest.raises(RuntimeError):
        score_file(
            lambda: CountingJudge(judge, fail_on=2), path, out, prompts_per_chunk=2, run_id="a"
        )
    again = CountingJudge(judge)
    score_file(lambda: again, path, out, prompts_per_chunk=2, run_id="b")
    assert again.calls == 4


def test_a_shard_judges_its_own_chunks(judge, tmp_path):
    path = samples_file(tmp_path)
    counting = CountingJudge(judge)
    score_file(
        lambda: counting, path, tmp_path / "s1.parquet", prompts_per_chunk=2, shard=1, shards=3
    )
    assert counting.calls == 1  # chunks 0..3: shard 1 of 3 has chunk 1
    assert sorted(pd.read_parquet(tmp_path / "s1.parquet").prompt_id.unique()) == ["p02", "p03"]


def test_bad_samples_files_are_named(judge, tmp_path):
    with pytest.raises(UserError, match=r"missing\.parquet: samples file not found"):
        score_file(lambda: judge, tmp_path / "missing.parquet", tmp_path / "out.parquet")
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(UserError, match=r"broken\.parquet: cannot read samples parquet"):
        score_file(lambda: judge, broken, tmp_path / "out.parquet")
    partial = tmp_path / "partial.parquet"
    pd.read_parquet(samples_file(tmp_path)).drop(columns=["response"]).to_parquet(partial)
    with pytest.raises(UserError, match="not a samples table, missing column"):
        score_file(lambda: judge, partial, tmp_path / "out.parquet")
    assert set(SAMPLES.columns) > {"response"}
