"""The files the rules name: each method's rounds, a round's inputs from the round before,
the shards of a sharded stage, the question-set answers, and the report's labels.

:class:`RunFiles` is the input side of the rules as plain Python: Snakemake calls its methods
with a job's wildcards (anything with ``it`` and ``chain`` attributes), so each is testable
without Snakemake. Where each file lives is ``sppoflow.layout``'s.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sppoflow import layout
from sppoflow.config.chains import method_of_chain
from sppoflow.config.paths import PROMPT_FILE_TYPES
from sppoflow.evaluate.question_sets import QUESTION_SETS
from sppoflow.train.methods import BASE, method_named
from sppoflow.workflow.stage_args import StageArgs, Wildcards


class RunFiles:
    """The files of one validated config's run."""

    def __init__(self, config: Mapping[str, Any], args: StageArgs) -> None:
        self.config = config
        self.args = args
        self.rounds = list(range(1, config["rounds"] + 1))
        self.shards = config["shards"]

    # -- a method's rounds ---------------------------------------------------------------

    def method_files(self, pattern: str, rounds: list[int] | None = None) -> list[str]:
        """``pattern`` (with {chain} and {it}) for every method and round."""
        return [
            pattern.format(chain=m.chain, it=it)
            for m in self.args.methods
            for it in (rounds or self.rounds)
        ]

    def method_stats(self) -> list[str]:
        """aggregate_stats.parquet of every method's rounds (round 1's is shared)."""
        return [
            f"{layout.sampling_dir(m.chain, it)}/aggregate_stats.parquet"
            for m in self.args.methods
            for it in self.rounds
        ]

    def previous_model(self, wildcards: Wildcards) -> str:
        return f"{layout.round_dir(wildcards.chain, int(wildcards.it) - 1)}/model"

    def base_model(self, wildcards: Wildcards) -> str | list[str]:
        """Round 0's model, for a method that reads the base model's log-probabilities
        (INPO's anchor); nothing (an empty list) for the others."""
        loss = self.args.train_settings(wildcards.chain)["loss"]
        return f"{layout.round_dir('', 0)}/model" if BASE in method_named(loss).references else []

    def previous_eval_responses(self, wildcards: Wildcards) -> str:
        previous = layout.round_dir(wildcards.chain, int(wildcards.it) - 1)
        return f"{previous}/eval/responses.parquet"

    def sampled(self, name: str) -> Callable[[Wildcards], str]:
        """An input function: file ``name`` of the round's sampling folder (round 1's is
        every method's)."""

        def path(wildcards: Wildcards) -> str:
            return f"{layout.sampling_dir(wildcards.chain, wildcards.it)}/{name}"

        return path

    def local_prompt_files(self, wildcards: Wildcards) -> list[str]:
        """Prompt files become inputs, so a missing one is reported before anything runs."""
        prompts = self.config["prompts"]
        sources = [prompts["source"], prompts["eval_source"], *prompts["per_round"]]
        return [s for s in sources if s and Path(s).suffix.lower() in PROMPT_FILE_TYPES]

    # -- shards (config shards): sample, score and eval_generate -------------------------

    def job_file(self, path: str) -> str:
        """A job's log or timing file, one per shard when the stage is sharded."""
        return layout.job_file(path, self.shards)

    def shard_flags(self, wildcards: Any) -> str:
        return "" if self.shards == 1 else f"--shard {wildcards.shard} --shards {self.shards}"

    # -- answers for the question sets (evaluate.question_sets) -----------------------------

    def round_question_set_answers(self, wildcards: Any) -> str:
        """The answers table of the round whose model an answer file is named after."""
        chain = self.args.chain_of_model(wildcards.name)
        return layout.question_set_answers(chain, wildcards.it, wildcards.question_set)

    def question_set_exports(self) -> list[str]:
        """The default target's share: every round's answers for each configured question set
        (round 0's once) and its lm-eval command."""
        question_sets = self.config["evaluate"]["question_sets"]
        rounds = [("", 0)] + [(m.chain, it) for m in self.args.methods for it in self.rounds]
        files = []
        for chain, it in rounds:
            model = self.args.model_name(chain, it)
            files += [layout.answer_file(b, model) for b in QUESTION_SETS if question_sets[b]]
            if question_sets["lm_eval_tasks"]:
                files.append(layout.lm_eval_file(chain, it))
        return files

    # -- the report ------------------------------------------------------------------------

    def method_label(self, wildcards: Wildcards) -> str:
        """A chain's round as the report names it: "round 2", or "dpo, round 2"."""
        name = method_of_chain(dict(self.config), wildcards.chain).name
        it = wildcards.it
        return f"{name}, round {it}" if self.args.side_by_side else f"Round {it}"

    def head_to_head_metrics(self) -> list[str]:
        return [f"{layout.HEAD_TO_HEAD}/metrics.json"] if self.args.side_by_side else []

    def head_to_head_flag(self, wildcards: Any, input: Any) -> str:
        if not self.args.side_by_side:
            return ""
        return f"--head-to-head {shlex.join(input.head_to_head)}"
