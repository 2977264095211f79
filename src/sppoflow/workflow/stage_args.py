"""The command-line flags each rule passes its stage script, from the validated config.

This is the inverse of :func:`sppoflow.cli.add_settings`: a config section becomes the
``--flags`` that the stage's settings dataclass parses back. :class:`StageArgs` has one method
per rule parameter; Snakemake calls it with the job's wildcards (anything with ``it`` and
``chain`` attributes), so each is testable without Snakemake.

What a param returns decides a rerun: Snakemake's params trigger re-runs a job whose params
changed. A setting that changes only where or how fast a job runs is wrapped in
:class:`Unrecorded`, which that trigger does not see.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from sppoflow import layout
from sppoflow.config.chains import methods
from sppoflow.config.paths import shipped_file
from sppoflow.config.run_only import recorded_config, split_run_only
from sppoflow.schema import nested_fields
from sppoflow.score import TRAINING_JUDGE

# sample.* settings that are the engine's (engine_flags) or the interpreter's, not the stage's
ENGINE_KEYS = ("backend", "gpu_memory_utilization")
# evaluate.* settings that are not the generation's: the judges and the question sets
NOT_GENERATION = ("training_judge", "judges", "question_sets")


class Wildcards(Protocol):
    it: str
    chain: str


class Unrecorded:
    """A param value that Snakemake's params trigger leaves out (it records plain values
    only): for flags that say where a job reports or how fast it runs, not what it computes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unrecorded) and other.text == self.text

    def __repr__(self) -> str:
        return f"Unrecorded({self.text!r})"


def flags(settings: Mapping[str, Any], skip: Iterable[str] = ()) -> str:
    """Settings as ``--flags`` (None values are left out: the flag's default is the same)."""
    skip = set(skip)
    parts = []
    for key, value in settings.items():
        if key in skip or value is None:
            continue
        name = key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, list):
            if value:
                parts.append(f"--{name} {' '.join(shlex.quote(str(v)) for v in value)}")
        else:
            parts.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(parts)


def round_seed(seed: int, it: int | str) -> int:
    """The sampling seed of round ``it``: different in every round, from one config seed."""
    return seed + 1000 * int(it)


class StageArgs:
    """The flags of every rule, for one validated config."""

    def __init__(self, config: Mapping[str, Any], run_group: str | None = None) -> None:
        self.config = config
        self.methods = methods(dict(config))
        self.side_by_side = len(self.methods) > 1
        # W&B groups a run's rounds by the working directory's name
        self.run_group = run_group or Path.cwd().name

    # -- shared by several stages --------------------------------------------------------

    @property
    def cpu_threads(self) -> str:
        """--cpu-threads for the jobs that compute with torch: recorded, since it changes
        their results on a CPU (see the schema's cpu_threads)."""
        return flags({"cpu_threads": self.config["cpu_threads"]})

    def system_prompt(self, wildcards=None) -> str:
        prompt = self.config["policy"]["system_prompt"]
        return f"--system-prompt {shlex.quote(prompt)}" if prompt else ""

    def engine(self) -> str:
        """The generation engine (vLLM's tensor parallel size comes from the job's GPUs, in
        the shell line, so that changing the GPU count re-runs nothing)."""
        sample = self.config["sample"]
        return flags({k: sample[k] for k in ENGINE_KEYS})

    def _method(self, chain: str):
        """The method whose rounds live under ``results/<chain>``."""
        for method in self.methods:
            if method.chain == chain:
                return method
        raise KeyError(f"no method has its rounds under results/{chain}")

    def method_name(self, wildcards: Wildcards) -> str:
        return self._method(wildcards.chain).name

    def method_names(self, wildcards=None) -> str:
        return " ".join(m.name for m in self.methods)

    def train_settings(self, chain: str) -> dict:
        """The train section of the method whose rounds live under ``chain``."""
        return self._method(chain).train

    def _train(self, wildcards: Wildcards) -> dict:
        return self.train_settings(wildcards.chain)

    # -- one per rule param ----------------------------------------------------------------

    def fetch(self, wildcards) -> str:
        """The model and revision of config section policy or judge, or of an evaluation
        judge (role eval_judge_<name>)."""
        role = wildcards.role
        if role.startswith("eval_judge_"):
            name = role.removeprefix("eval_judge_")
            [section] = [j for j in self.config["evaluate"]["judges"] if j["name"] == name]
        else:
            section = self.config[role]
        return flags({k: section[k] for k in ("model", "revision")})

    def base_model(self, wildcards=None) -> str:
        policy = self.config["policy"]
        keys = ("model", "revision", "chat_template", "dtype", "trust_remote_code")
        return flags({k: policy[k] for k in keys})

    def pool(self, wildcards=None) -> str:
        return flags(self.config["prompts"], skip=("n_per_round",))

    def round_prompts(self, wildcards: Wildcards) -> str:
        n = self.config["prompts"]["n_per_round"]
        return f"--round {wildcards.it} --n-per-round {'all' if n is None else n}"

    def sample(self, wildcards: Wildcards) -> str:
        settings = dict(self.config["sample"])
        settings["seed"] = round_seed(settings["seed"], wildcards.it)
        skip = (*ENGINE_KEYS, "vllm_python")
        return f"{flags(settings, skip=skip)} {self.engine()} {self.system_prompt()}"

    def eval_generate(self, wildcards: Wildcards) -> str:
        evaluate = flags({**self.config["evaluate"], "k": 1}, skip=NOT_GENERATION)
        return f"{evaluate} {self.engine()} {self.system_prompt()}"

    def question_set_answers(self, wildcards: Wildcards) -> str:
        """The evaluation's generation settings and evaluate.question_sets.sampling; with the
        question sets' own temperatures, evaluate's temperature and top-p are left out, so that
        changing them re-runs no question-set answers."""
        evaluate = self.config["evaluate"]
        sampling = evaluate["question_sets"]["sampling"]
        skip = (*NOT_GENERATION, *(("temperature", "top_p") if sampling == "conventional" else ()))
        generation = flags({**evaluate, "k": 1}, skip=skip)
        return f"{generation} --sampling {sampling} {self.engine()} {self.system_prompt()}"

    def generation_python(self, wildcards: Wildcards) -> Unrecorded:
        """sample.vllm_python (a venv with vLLM, where conda is not used) for the vllm
        backend, else the job's python: where vLLM is installed is no reason to re-run."""
        sample = self.config["sample"]
        python = sample["vllm_python"] if sample["backend"] == "vllm" else None
        return Unrecorded(shlex.quote(str(Path(python).expanduser())) if python else "python")

    def judge(self, wildcards: Wildcards) -> str:
        return flags(split_run_only("judge", self.config["judge"])[0])

    def judge_run_only(self, wildcards: Wildcards) -> Unrecorded:
        """The judge's batch sizes and device: how fast it runs, not what it writes."""
        return Unrecorded(flags(split_run_only("judge", self.config["judge"])[1]))

    def aggregate(self, wildcards: Wildcards) -> str:
        return f"{flags(self.config['aggregate'])} --round {wildcards.it}"

    def train(self, wildcards: Wildcards) -> str:
        train = self._train(wildcards)
        result, _ = split_run_only("train", train)
        settings = flags(result, skip=("lora", "accelerate_config"))
        return f"{settings} {flags(nested_fields('lora', train['lora']))} {self.system_prompt()}"

    def train_run_only(self, wildcards: Wildcards) -> Unrecorded:
        """Checkpoint interval and gradient checkpointing (train.report_to goes with
        tracking): changing them never re-runs training."""
        run_only = split_run_only("train", self._train(wildcards))[1]
        return Unrecorded(flags(run_only, skip=("report_to",)))

    def tracking(self, wildcards: Wildcards) -> Unrecorded:
        """train.report_to and the round's tracking folder, which outlives train_state:
        turning TensorBoard or W&B on or off never re-runs training."""
        name = self.round_model(wildcards)  # rounds 1 and on: <method>-iter<t>
        tracking = {
            "report_to": self.config["train"]["report_to"],
            "tracking_dir": layout.tracking_dir(wildcards.chain, wildcards.it),
            "run_name": name if self.side_by_side else None,
            "run_group": self.run_group,
        }
        return Unrecorded(flags(tracking))

    def train_launch(self, wildcards: Wildcards) -> str:
        """One process per GPU: DDP unless train.accelerate_config names DeepSpeed or FSDP."""
        accelerate_config = self._train(wildcards)["accelerate_config"]
        if not accelerate_config:
            return ""
        return f"--accelerate-config {shlex.quote(str(shipped_file(accelerate_config)))}"

    def round_model(self, wildcards: Wildcards) -> str:
        """A round's model as exported files name it: <method>-iter<t>; side by side, round 0
        is base-iter0."""
        return self.model_name(wildcards.chain, wildcards.it)

    def model_name(self, chain: str, it: int | str) -> str:
        """The name of round ``it`` of a chain's model (round_model)."""
        if int(it) == 0 and self.side_by_side:
            return "base-iter0"
        return f"{self._method(chain).name}-iter{it}"

    def chain_of_model(self, name: str) -> str:
        """The chain of a model named by model_name (without its -iter<t>)."""
        if name == "base" and self.side_by_side:
            return ""
        for method in self.methods:
            if method.name == name:
                return method.chain
        raise KeyError(f"no method is named {name}")

    def lm_eval(self, wildcards: Wildcards) -> str:
        """The lm-eval command's settings: the round's model name, evaluate.question_sets'
        tasks, the evaluation's precision, and the policy's remote code and system prompt."""
        settings = {
            "name": self.round_model(wildcards),
            "tasks": self.config["evaluate"]["question_sets"]["lm_eval_tasks"],
            "dtype": self.config["evaluate"]["dtype"],
            "trust_remote_code": self.config["policy"]["trust_remote_code"],
        }
        return f"{flags(settings)} {self.system_prompt()}".rstrip()

    def report_config(self, wildcards=None) -> str:
        """The report's config page: the config that made the results (no run-only
        settings, no shards) and the rounds, keys sorted, so that how jobs ran never re-runs
        the report."""
        shown = {"rounds": self.config["rounds"], **recorded_config(self.config)}
        return shlex.quote(json.dumps(shown, sort_keys=True))

    # -- the evaluation's judges -------------------------------------------------------------

    def evaluation_judges(self) -> dict[str, dict]:
        """The evaluation's judges as {name: settings}: the training judge (unless
        evaluate.training_judge is off), then evaluate.judges. The score stage's chunking is
        left out, so that changing it never re-runs an evaluation."""
        evaluate = self.config["evaluate"]
        judges = {TRAINING_JUDGE: self.config["judge"]} if evaluate["training_judge"] else {}
        for judge in evaluate["judges"]:
            judges[judge["name"]] = {k: v for k, v in judge.items() if k != "name"}
        return {
            name: {k: v for k, v in settings.items() if k != "prompts_per_chunk"}
            for name, settings in judges.items()
        }

    def evaluation_judge_records(self) -> list[str]:
        """The hub records (rule fetch_model) of the evaluation judges' models."""
        evaluate = self.config["evaluate"]
        roles = ["judge"] if evaluate["training_judge"] else []
        roles += [f"eval_judge_{judge['name']}" for judge in evaluate["judges"]]
        return [layout.hub_record(role) for role in roles]

    def evaluate_judges(self, wildcards=None) -> Unrecorded:
        """--judges with every setting; unrecorded, since judged_by decides a rerun."""
        return Unrecorded(f"--judges {shlex.quote(json.dumps(self.evaluation_judges()))}")

    def judged_by(self, wildcards=None) -> str:
        """The evaluation judges' settings that decide the verdicts (no batch sizes, no
        device): recorded, so that changing one re-runs the evaluations."""
        return json.dumps(
            {name: split_run_only("judge", s)[0] for name, s in self.evaluation_judges().items()},
            sort_keys=True,
        )
