"""What a planned run will cost, before anything is submitted: its jobs, the GPU-hours of each
stage and round, and each job's peak GPU memory against the GPU it asks for.

A stage's time is its work (tokens generated, pairs judged, tokens trained) over a rate: the
rate a finished run measured on this machine or cluster, from its jobs' logs and timing
files (sppoflow.runtime.job_records: the work over the jobs' whole wall time), where that
run has one
for the stage; else the cost model's assumption, a FLOP count at a stated share (MFU) of the
GPU's bf16 peak, or for decoding an output rate. A job's memory is its model's weights, and for
training their gradients and optimizer state (sharded over the job's GPUs under ZeRO-3 or
FSDP) and one micro-batch's activations; vLLM reserves its share of the GPU. Every figure says
whether it was measured or assumed. Nothing here imports torch: it runs where Snakemake plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sppoflow.config.chains import methods
from sppoflow.runtime.gpus import GPUS, Gpu, known_gpu
from sppoflow.runtime.placement import GPU_JOBS
from sppoflow.score.plans import planned_pairs
from sppoflow.train.methods import method_named
from sppoflow.workflow.memory_model import (
    ASSUMED_PROMPT_TOKENS,
    KNOWN_SHAPES,
    generation_memory_gb,
    judge_memory_gb,
    model_shape,
    training_memory_gb,
)

# The cost model's assumptions (a budget, not a measurement; benchmarks/cost_model.py)
ASSUMED_MFU = {"train": 0.35, "score": 0.30}
VLLM_TOKENS_PER_S_7B_H100 = 3000.0  # output tokens/s per GPU, bf16, large batches
TRANSFORMERS_SHARE_OF_VLLM = 0.1  # transformers' own loop on a GPU, no paged attention
H100_PEAK = GPUS["H100"].peak_bf16_tflops * 1e12
ASSUMED_ROUND_PROMPTS = 20000  # the authors' UCLA-AGI splits hold about 20k prompts each
PAIRWISE_JUDGES = ("pairrm", "llm_judge")  # one pass per ordered pair; the others per response


REFERENCE_7B = KNOWN_SHAPES["mistralai/Mistral-7B-Instruct-v0.2"].parameters


@dataclass
class Stage:
    """One stage's jobs in one round."""

    stage: str
    round: int
    jobs: int
    gpus: int  # per job
    amount: float  # the work: tokens generated or trained, passes judged
    unit: str
    seconds: float | None = None  # per job, wall
    rate_source: str = ""
    memory_gb: float | None = None  # per GPU
    memory_note: str = ""

    @property
    def gpu_hours(self) -> float | None:
        if self.gpus == 0:
            return 0.0  # a CPU job holds no GPU
        if self.seconds is None:
            return None
        return self.seconds * self.jobs * self.gpus / 3600


@dataclass
class Plan:
    rounds: int
    stages: list[Stage] = field(default_factory=list)
    gpu: Gpu | None = None
    gpu_memory_gb: float | None = None
    assumptions: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line per stage whose jobs cannot fit on the GPU they ask for."""
        if not self.gpu_memory_gb:
            return []
        lines, seen = [], set()
        for s in self.stages:
            if s.gpus and s.memory_gb and s.memory_gb > self.gpu_memory_gb and s.stage not in seen:
                seen.add(s.stage)
                lines.append(
                    f"plan warning: a {s.stage} job needs about {s.memory_gb:.0f} GB per GPU "
                    f"({s.memory_note}) but its {s.gpus} GPU(s) have "
                    f"{self.gpu_memory_gb:.0f} GB each: it will not fit"
                )
        return lines


def requested_gpu(config: dict, environ: dict) -> tuple[Gpu | None, float | None]:
    """The GPU the jobs ask for (SPPO_SLURM_GPU_MODEL) and its memory: config
    resources.gpu_memory_gb where given, else the known GPU's."""
    gpu = known_gpu(environ.get(GPU_JOBS["gpu_model"]))
    memory = config["resources"].get("gpu_memory_gb") or (gpu.memory_gb if gpu else None)
    return gpu, memory


def round_prompts(config: dict, run: Path | None) -> tuple[int, str]:
    """Prompts per round: n_per_round, else the built pool's, else the authors' split size."""
    prompts = config["prompts"]
    if prompts["n_per_round"]:
        return prompts["n_per_round"], "prompts.n_per_round"
    pool = run / "prompts" / "pool.parquet" if run else None
    if pool and pool.is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(pool, columns=["split", "source_round"]).to_pandas()
        train = table[table["split"] == "train"]
        return int(train.groupby("source_round").size().max()), f"{pool}"
    return ASSUMED_ROUND_PROMPTS, "assumed, the authors' splits' size: set prompts.n_per_round"


def measured(run: Path | None) -> dict[str, tuple[str, float, str]]:
    """{stage: (kind, value, where)} from a finished run's job logs and timing files: the
    work per job-second where the stage logs its rate ("rate"), else its jobs' mean wall
    seconds ("seconds"); empty where there is no run."""
    if run is None or not run.is_dir():
        return {}
    from sppoflow.errors import UserError
    from sppoflow.runtime.job_records import read_throughput, read_timings, throughput

    try:
        jobs = read_timings(run)
    except UserError:
        return {}
    where = f"measured in {run}"
    found = {
        stage: ("seconds", rows["seconds"].mean(), where) for stage, rows in jobs.groupby("stage")
    }
    table = throughput(read_throughput(run), jobs)
    # the plan counts generated tokens, judged pairs and trained tokens; a train job's
    # reference passes are part of its job time, and evaluate's jobs are timed whole
    table = table[~table["work"].isin(["reference", "base_reference", "evaluate"])]
    for stage, rows in table.groupby("stage"):
        job_seconds = (rows["amount"] / rows["per_job_s"]).sum()
        if job_seconds > 0:
            found[stage] = ("rate", rows["amount"].sum() / job_seconds, where)
    return found


def question_set_turns(config: dict) -> dict[str, int]:
    """The turns to answer of each configured question set (evaluate.question_sets): every turn of
    its question file's questions."""
    from sppoflow.evaluate.question_sets import QUESTION_SETS, read_questions

    turns = {}
    for name in QUESTION_SETS:
        path = config["evaluate"]["question_sets"][name]
        if path:  # read and checked when the config was validated
            _, questions = read_questions(Path(path).expanduser(), name)
            turns[name] = sum(len(q.turns) for q in questions)
    return turns


def measured_lengths(run: Path | None) -> tuple[float, float] | None:
    """(mean prompt tokens, mean response tokens) of a finished run's samples, or None."""
    files = sorted(run.glob("**/samples.parquet")) if run and run.is_dir() else []
    if not files:
        return None
    import pandas as pd

    columns = ["prompt_tokens", "response_tokens"]
    samples = pd.concat([pd.read_parquet(f, columns=columns) for f in files])
    return float(samples["prompt_tokens"].mean()), float(samples["response_tokens"].mean())


def plan_cost(config: dict, run: Path | None = None, environ: dict | None = None) -> Plan:
    """The plan of a validated config: each stage's jobs per round, their time and memory."""
    gpu, gpu_memory = requested_gpu(config, environ or {})
    plan = Plan(config["rounds"], gpu=gpu, gpu_memory_gb=gpu_memory)
    policy, policy_from = model_shape(config["policy"]["model"], config["policy"]["revision"])
    judge, judge_from = model_shape(config["judge"]["model"], config["judge"]["revision"])
    n, prompts_from = round_prompts(config, run)
    sample, resources, shards = config["sample"], config["resources"], config["shards"]
    k, n_eval, chains = sample["k"], config["prompts"]["n_eval"], methods(config)
    lengths = measured_lengths(run)
    prompt, response = lengths or (ASSUMED_PROMPT_TOKENS, min(sample["max_new_tokens"], 450))
    lengths_from = f"measured in {run}" if lengths else "assumed"
    peak = gpu.peak_bf16_tflops * 1e12 if gpu else H100_PEAK
    records = measured(run)
    plan.assumptions += [
        f"policy {config['policy']['model']}: shape {policy_from}",
        f"judge {config['judge']['model']}: shape {judge_from}",
        f"{n} prompts per round ({prompts_from}), {n_eval} held out, K={k}",
        f"prompts of {prompt:.0f} tokens and responses of {response:.0f} on average "
        f"({lengths_from})",
    ]
    if not gpu:
        plan.assumptions.append("FLOP rates of an H100: SPPO_SLURM_GPU_MODEL names no known GPU")
    if policy is None:
        plan.assumptions.append("no sample, train or eval_generate figures: the policy's shape "
                                "is unknown (fetch it, or give a local folder)")  # fmt: skip

    def timed(stage: Stage, flop: float | None = None, tokens_per_s: float | None = None):
        kind, value, where = records.get(stage.stage, (None, None, ""))
        if kind == "rate":
            stage.seconds = stage.amount / value / stage.jobs
            stage.rate_source = f"{where} ({value:.1f} {stage.unit} per job-second)"
        elif kind == "seconds":
            stage.seconds = value
            stage.rate_source = f"{where} (mean job wall time)"
        elif stage.gpus == 0:
            stage.rate_source = "a CPU job, nothing measured (run once, then plan with --run)"
        elif flop is not None:
            mfu = ASSUMED_MFU["train" if stage.stage == "train" else "score"]
            stage.seconds = flop / (stage.jobs * stage.gpus * peak * mfu)
            stage.rate_source = f"assumed: {mfu:.0%} of the bf16 peak"
        elif tokens_per_s is not None:
            stage.seconds = stage.amount / (stage.jobs * stage.gpus * tokens_per_s)
            stage.rate_source = f"assumed: {tokens_per_s:.0f} output tokens/s per GPU"
        plan.stages.append(stage)

    def generate(name: str, rnd: int, jobs: int, prompts: int, per_prompt: int, res: dict):
        if policy is None:
            return
        stage = Stage(name, rnd, jobs, res["gpu"], prompts * per_prompt * response, "tokens")
        stage.memory_gb, stage.memory_note = generation_memory_gb(
            policy, sample, res["gpu"], gpu_memory
        )
        rate = VLLM_TOKENS_PER_S_7B_H100 * (REFERENCE_7B / policy.parameters) * (peak / H100_PEAK)
        timed(stage, tokens_per_s=rate * (1 if sample["backend"] == "vllm" else
                                          TRANSFORMERS_SHARE_OF_VLLM))  # fmt: skip

    def judge_pairs(name: str, rnd: int, jobs: int, pairs: float, responses: float, res: dict):
        """``pairs`` ordered pairs, one forward pass each for a pairwise judge; a pointwise
        judge scores each of the ``responses`` once."""
        stage = Stage(name, rnd, jobs, res["gpu"], pairs, "pairs")
        flop = None
        if judge is not None:
            pairwise = config["judge"]["backend"] in PAIRWISE_JUDGES
            tokens = min(2048, prompt + (2 if pairwise else 1) * response)
            per_pass = 2 * judge.parameters * tokens + 12 * judge.layers * tokens**2 * judge.hidden
            flop = (pairs if pairwise else responses) * per_pass
            stage.memory_gb, stage.memory_note = judge_memory_gb(judge, config["judge"])
        timed(stage, flop=flop)

    def train(method_train: dict, rnd: int):
        if policy is None:
            return
        sequences = 2 if method_train["train_on"] == "winner_loser" else k
        length = min(method_train["max_length"], prompt + response)
        tokens = n * sequences * length * method_train["epochs"]
        # the step's forward and backward, a pass per reference model (the round's starting
        # policy; INPO's base model too), checkpointing's recomputation
        references = len(method_named(method_train["loss"]).references)
        per_token = 6 + 2 * references + (2 if method_train["gradient_checkpointing"] else 0)
        gpus = resources["train"]["gpu"] * resources["train"]["nodes"]
        stage = Stage("train", rnd, 1, gpus, tokens, "tokens")
        sharded = Path(method_train["accelerate_config"] or "").stem in ("deepspeed_zero3", "fsdp")
        stage.memory_gb, stage.memory_note = training_memory_gb(
            policy, method_train, max(gpus, 1), sharded
        )
        timed(stage, flop=per_token * policy.parameters * tokens)

    base = Stage("base_model", 0, 1, 0, 1, "model")
    timed(base)
    generate("eval_generate", 0, shards, n_eval, 1, resources["evaluate"])
    answered = question_set_turns(config)
    for name, turns in answered.items():
        generate(f"{name}_answers", 0, 1, turns, 1, resources["evaluate"])
    planned = len(planned_pairs(k, config["judge"]["comparisons"]))  # per prompt
    for rnd in range(1, config["rounds"] + 1):
        sampled = 1 if rnd == 1 else len(chains)  # round 1 samples the base model, once
        generate("sample", rnd, shards * sampled, n * sampled, k, resources["sample"])
        judge_pairs("score", rnd, shards * sampled, n * sampled * planned, n * sampled * k,
                    resources["score"])  # fmt: skip
        for method in chains:
            train(method.train, rnd)
        generate("eval_generate", rnd, shards * len(chains), n_eval * len(chains), 1,
                 resources["evaluate"])  # fmt: skip
        # each round's responses against the base's and the previous round's, both orders
        judge_pairs("evaluate", rnd, len(chains), n_eval * len(chains) * 4,
                    n_eval * len(chains) * 3, resources["evaluate"])  # fmt: skip
        for name, turns in answered.items():
            generate(f"{name}_answers", rnd, len(chains), turns * len(chains), 1,
                     resources["evaluate"])  # fmt: skip
    return plan


def _minutes(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def plan_lines(plan: Plan) -> list[str]:
    """The plan as text: what it assumed, per stage and per round the jobs and GPU-hours,
    each job's memory against its GPU, and the warnings."""
    device = (
        f"{plan.gpu.name} ({plan.gpu_memory_gb:.0f} GB)"
        if plan.gpu
        else f"{plan.gpu_memory_gb:.0f} GB GPUs"
        if plan.gpu_memory_gb
        else "GPUs of unknown memory (set SPPO_SLURM_GPU_MODEL or resources.gpu_memory_gb)"
    )
    jobs = sum(s.jobs for s in plan.stages)
    lines = [f"plan: {plan.rounds} round(s), {jobs} model jobs on {device}"]
    lines += [f"  {note}" for note in plan.assumptions]
    lines.append("")
    lines.append(
        f"{'stage':14} {'jobs':>5} {'GPUs/job':>8} {'min/job':>7} {'GPU-h':>8} {'GB/GPU':>7}  rate"
    )
    by_stage: dict[str, list[Stage]] = {}
    for stage in plan.stages:
        by_stage.setdefault(stage.stage, []).append(stage)
    for name, stages in by_stage.items():
        hours = [s.gpu_hours for s in stages]
        total = None if None in hours else sum(hours)
        per_job = [s.seconds / 60 for s in stages if s.seconds is not None]
        memory = max((s.memory_gb for s in stages if s.memory_gb), default=None)
        lines.append(
            f"{name:14} {sum(s.jobs for s in stages):>5} {stages[0].gpus:>8} "
            f"{_minutes(max(per_job) if per_job else None):>7} {_hours(total):>8} "
            f"{'-' if memory is None else f'{memory:.1f}':>7}  {stages[0].rate_source}"
        )
    lines.append("")
    rounds = sorted({s.round for s in plan.stages})
    per_round = []
    for rnd in rounds:
        hours = [s.gpu_hours for s in plan.stages if s.round == rnd]
        per_round.append(f"{rnd}: {_hours(None if None in hours else sum(hours))}")
    known = [s.gpu_hours for s in plan.stages if s.gpu_hours is not None]
    lines.append("GPU-hours per round: " + ", ".join(per_round))
    lines.append(
        f"GPU-hours in all: {_hours(sum(known))}"
        + ("" if len(known) == len(plan.stages) else " (stages without a rate left out)")
    )
    memory_notes = {s.stage: s.memory_note for s in plan.stages if s.memory_note}
    lines += [f"memory per {name} job: {note}" for name, note in memory_notes.items()]
    return lines + plan.warnings()
