"""The score stage: every ordered pair of a prompt's responses, judged, streamed chunk by chunk.

Prompts are judged in chunks of a fixed number of prompts (in prompt-id order), each chunk
batched on its own. A chunk is also the unit of a shard: shard s of N judges chunks s, s + N,
..., so every pair meets the same batch-mates whatever the number of shards, and 1 shard
and N shards give the same preferences bit for bit.

The stage streams: DuckDB reads the samples file one chunk at a time (the text columns of the
chunk's range of prompt ids) and hands the chunk over; each chunk's preferences go to
a part file as soon as they are judged, and the parts are joined into the output at the end
(the join holds the preference rows, which have no text, in memory: 400k rows for a paper
round). Host memory for the texts stays that of a chunk whatever the number of prompts (a paper
round has 20k prompts x K = 5 responses of up to 2k tokens). A run that stops keeps its parts:
the rerun with the same inputs judges only the chunks that are missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from sppoflow.atomic import remove_tree
from sppoflow.errors import UserError
from sppoflow.runtime.run_state import keep_for_run
from sppoflow.runtime.shards import check_shard
from sppoflow.runtime.throughput import log_rate
from sppoflow.score.judges import Judge, sigmoid
from sppoflow.score.plans import planned_pairs
from sppoflow.tables import (
    PREFERENCES,
    SAMPLES,
    check_table,
    write_table,
)

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("prompt_id", "response_idx", "prompt", "response")
DUCKDB_MEMORY = "512MB"  # a chunk needs a few MB; beyond this DuckDB spills to the parts folder


def judge_chunk(
    judge: Judge, groups: list[tuple[str, pd.DataFrame]], comparisons: str = "all"
) -> pd.DataFrame:
    """PREFERENCES rows for the prompts of one chunk: the ordered pairs of the judging plan
    ``comparisons`` (sppoflow.score.plans)."""
    empty = sum(int((g["response"].str.strip() == "").sum()) for _, g in groups)
    if empty:
        log.warning(
            "%d of %d responses are empty; the judge compares them as they are",
            empty,
            sum(len(g) for _, g in groups),
        )
    plans = [planned_pairs(len(g), comparisons) for _, g in groups]
    logits = judge.planned_logits(
        [g["prompt"].iat[0] for _, g in groups], [g["response"].tolist() for _, g in groups], plans
    )
    frames = []
    for (pid, group), pairs, values in zip(groups, plans, logits, strict=True):
        idx = group["response_idx"].to_numpy()
        i, j = (np.array(side, dtype=int) for side in zip(*pairs, strict=True))
        frames.append(pd.DataFrame({"prompt_id": pid, "i": idx[i], "j": idx[j], "logit": values}))
    preferences = pd.concat(frames, ignore_index=True)
    preferences["prob"] = sigmoid(preferences["logit"].to_numpy())
    return preferences


class SampleChunks:
    """The chunks of a samples file, read through DuckDB a chunk at a time."""

    def __init__(self, samples: Path, prompts_per_chunk: int, spill_dir: Path) -> None:
        if prompts_per_chunk < 1:
            raise UserError(f"judge.prompts_per_chunk must be 1 or more, got {prompts_per_chunk}")
        self.samples = samples
        self.prompts_per_chunk = prompts_per_chunk
        self.db = duckdb.connect(
            config={
                "threads": 1,
                "memory_limit": DUCKDB_MEMORY,
                "temp_directory": str(spill_dir),
                "preserve_insertion_order": False,
            }
        )
        check_table(samples, SAMPLES)
        self.db.execute(
            """CREATE TEMP TABLE chunk_of AS
               SELECT prompt_id, (row_number() OVER (ORDER BY prompt_id) - 1) // $n AS chunk,
                      responses
               FROM (SELECT prompt_id, count(*) AS responses FROM read_parquet($path)
                     GROUP BY prompt_id)""",
            {"path": str(samples), "n": prompts_per_chunk},
        )
        self._check_responses()
        self.count = self.db.execute("SELECT coalesce(max(chunk) + 1, 0) FROM chunk_of").fetchone()[
            0
        ]

    def _check_responses(self) -> None:
        too_few = self.db.execute(
            "SELECT prompt_id FROM chunk_of WHERE responses < 2 ORDER BY prompt_id"
        ).fetchall()
        if too_few:
            raise UserError(
                f"{len(too_few)} prompt(s) have fewer than 2 responses (e.g. {too_few[0][0]}); "
                "pairwise preferences need K >= 2"
            )

    def chunks(self, wanted: set[int]) -> Iterator[tuple[int, list[tuple[str, pd.DataFrame]]]]:
        """(chunk number, [(prompt_id, its responses)]) for the chunks in ``wanted``, in order.

        One query per chunk, for its range of prompt ids: nothing is sorted but the chunk's own
        rows, so memory stays that of a chunk (a sort of a whole paper round's texts ran out of
        a 256 MB limit), and row groups outside the range are skipped where the file is sorted.
        """
        bounds = dict(
            (chunk, (low, high))
            for chunk, low, high in self.db.execute(
                "SELECT chunk, min(prompt_id), max(prompt_id) FROM chunk_of GROUP BY chunk"
            ).fetchall()
        )
        columns = ", ".join(TEXT_COLUMNS)
        for number in sorted(wanted):
            low, high = bounds[number]
            rows = self.db.execute(
                f"""SELECT {columns} FROM read_parquet($path)
                    WHERE prompt_id BETWEEN $low AND $high ORDER BY prompt_id, response_idx""",
                {"path": str(self.samples), "low": low, "high": high},
            ).df()
            yield number, _groups(rows)

    def close(self) -> None:
        self.db.close()


def _groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(pid, group) for pid, group in rows.groupby("prompt_id", sort=True)]


def run_fingerprint(samples: Path, judge_settings: dict, prompts_per_chunk: int) -> str:
    """Identifies a score run, so that kept parts are reused only for the same inputs."""
    stat = samples.stat()
    key = {
        "samples": [str(samples.resolve()), stat.st_size, stat.st_mtime_ns],
        "judge": judge_settings,
        "prompts_per_chunk": prompts_per_chunk,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def parts_folder(out: Path, run_id: str) -> Path:
    """``<out>.parts``, kept across an interrupted run with the same inputs, else emptied."""
    return keep_for_run(out.with_name(out.name + ".parts"), run_id, "run.txt")


def score_file(
    load_judge: Callable[[], Judge],
    samples: Path | str,
    out: Path | str,
    prompts_per_chunk: int = 256,
    shard: int = 0,
    shards: int = 1,
    run_id: str = "",
    comparisons: str = "all",
) -> int:
    """Judge this shard's chunks of the samples file into a PREFERENCES file, the ordered
    pairs of the judging plan ``comparisons``; returns the number of preference rows written.
    ``load_judge`` is called once the samples are checked, and only if a chunk is left to
    judge, so that bad samples are refused without loading a model."""
    check_shard(shard, shards)
    samples, out = Path(samples), Path(out)
    if not samples.is_file():
        raise UserError(f"{samples}: samples file not found")
    parts = parts_folder(out, run_id)
    source = SampleChunks(samples, prompts_per_chunk, parts)
    try:
        mine = [c for c in range(source.count) if c % shards == shard]
        done = {c for c in mine if (parts / part_name(c)).is_file()}
        if done:
            log.info("%d of %d chunks were judged before: resuming", len(done), len(mine))
        judge = load_judge() if set(mine) - done else None
        judged, start = 0, time.perf_counter()
        for number, groups in source.chunks(set(mine) - done):
            chunk = judge_chunk(judge, groups, comparisons)
            write_table(chunk, parts / part_name(number), PREFERENCES)
            judged += len(chunk)
            log.info(
                "judged chunk %d (%d of %d, %d prompts)",
                number,
                len(list(parts.glob("chunk-*.parquet"))),
                len(mine),
                len(groups),
            )
    finally:
        source.close()
    what = "ordered pairs judged this run, reading the samples included"
    seconds = time.perf_counter() - start
    log_rate("score", judged, "pairs", seconds, what)
    if judge is not None:
        judge.log_compute("score", seconds)
    rows = join_parts([parts / part_name(c) for c in mine], out)
    remove_tree(parts)
    return rows


def part_name(chunk: int) -> str:
    return f"chunk-{chunk:07d}.parquet"


PREFERENCE_KEYS = ["prompt_id", "i", "j"]


def join_parts(paths: list[Path], out: Path) -> int:
    """The part files as one PREFERENCES table, in (prompt_id, i, j) order, written as the
    gather stage writes its shards' rows, so that one job and N shards write the same bytes.
    The table has no text: 20k prompts x K = 5 are 400k rows, about 25 MB in memory."""
    frames = [pd.read_parquet(path, columns=list(PREFERENCES.columns)) for path in paths]
    empty = pd.DataFrame(columns=list(PREFERENCES.columns))
    frame = pd.concat(frames or [empty], ignore_index=True)
    frame = frame.sort_values(PREFERENCE_KEYS).reset_index(drop=True)
    write_table(frame, out, PREFERENCES)
    return len(frame)


def score_samples(
    judge: Judge,
    samples: pd.DataFrame,
    prompts_per_chunk: int = 256,
    shard: int = 0,
    shards: int = 1,
    comparisons: str = "all",
) -> pd.DataFrame:
    """``score_file`` on an in-memory samples table (through a temporary file)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "samples.parquet"
        full = samples.copy()
        for column in SAMPLES.columns:
            if column not in full:
                full[column] = None
        full.to_parquet(path, index=False)
        out = Path(folder) / "preferences.parquet"
        score_file(
            lambda: judge, path, out, prompts_per_chunk, shard, shards, comparisons=comparisons
        )
        return pd.read_parquet(out)
