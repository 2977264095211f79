"""Where a run's outputs live under ``results/``: the one place the rules, ``methods``,
``exports`` and the scripts read it from.

A method's rounds form a *chain*: its folder prefix under ``results/``, ``""`` for a single
method and ``"methods/<name>/"`` for each of several side by side. Round 0 is the base model,
every chain's, in ``results/iter0``; round 1 samples the base model, so its samples,
preferences and pairs are every chain's too, in ``results/iter1``.
"""

from __future__ import annotations

RESULTS = "results"
BASE_ROUND = f"{RESULTS}/iter0"
SHARED_SAMPLING = f"{RESULTS}/iter1"
HEAD_TO_HEAD = f"{RESULTS}/methods/head_to_head"
EXPORT = f"{RESULTS}/export"
# A Snakemake wildcard pattern of a chain: "" or "methods/<name>/"
CHAIN_PATTERN = r"(|methods/[A-Za-z][A-Za-z0-9_.-]*/)"
# A regular expression whose group 1 is the method of a path under a chain (DuckDB and Python)
METHOD_IN_PATH = r"methods/([^/]+)/"


def chain(method: str, side_by_side: bool) -> str:
    """The folder prefix of ``method``'s rounds under results/."""
    return f"methods/{method}/" if side_by_side else ""


def round_dir(chain: str, it: int | str) -> str:
    """The folder of round ``it`` of a chain; round 0 is the base model, every chain's."""
    return BASE_ROUND if int(it) == 0 else f"{RESULTS}/{chain}iter{it}"


def sampling_dir(chain: str, it: int | str) -> str:
    """Where a round's samples, preferences and pairs live: round 1's are every chain's."""
    return SHARED_SAMPLING if int(it) == 1 else round_dir(chain, it)


def question_set_answers(chain: str, it: int | str, question_set: str) -> str:
    """A round's answers to a question set's questions (sppoflow.evaluate.question_set_answers)."""
    return f"{round_dir(chain, it)}/eval/{question_set}_answers.parquet"


def answer_file(question_set: str, model: str) -> str:
    """A round's answers in the layout of the question set's tool,
    <folder>/model_answer/<model>.jsonl, as arena-hard-auto and FastChat's llm_judge keep them
    under data/<bench>/. Every model's file is in the one folder (methods side by side too: the
    names differ), since each tool compares the models it finds there."""
    return f"{EXPORT}/{question_set}/model_answer/{model}.jsonl"


def lm_eval_file(chain: str, it: int | str) -> str:
    """The lm-eval command of a round (round 0: chain "")."""
    return f"{EXPORT}/{chain}lm_eval_iter{it}.sh"


def hub_record(role: str) -> str:
    """What rule fetch_model records of the model of ``role`` (policy, judge or
    eval_judge_<name>): where it lies in the hub cache."""
    return f"{RESULTS}/hub/{role}.json"


def tracking_dir(chain: str, it: int | str) -> str:
    """A round's TensorBoard / W&B files: outside its folder, so they outlive its retries."""
    return f"{RESULTS}/tracking/{chain}iter{it}"


def shard_file(name: str, shards: int) -> str:
    """The pattern (wildcards chain, it, shard) of one shard's part of a sharded output."""
    return f"{RESULTS}/{{chain}}iter{{it}}/shards/{name}.{{shard}}-of-{shards}.parquet"


def job_file(path: str, shards: int) -> str:
    """A log or timing path of a job that may be one shard of several."""
    if shards == 1:
        return path
    stem, extension = path.rsplit(".", 1)
    return f"{stem}.{{shard}}-of-{shards}.{extension}"


def round_file_globs(
    file: str, shared_rounds: tuple[int, ...], methods: list[tuple[str, str]]
) -> list[tuple[str, list[str]]]:
    """(glob, the methods its rows belong to) covering ``file`` in every round of every
    (name, chain) method: a single method's rounds all under results/; side by side, the
    ``shared_rounds`` there, each method's own under its chain."""
    if len(methods) == 1:
        return [(f"{RESULTS}/iter*/{file}", [methods[0][0]])]
    names = [name for name, _ in methods]
    shared = [(f"{round_dir('', r)}/{file}", names) for r in shared_rounds]
    return shared + [(f"{RESULTS}/{chain}iter*/{file}", [name]) for name, chain in methods]
