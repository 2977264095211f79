"""Any folder name: the workflow, run from a copy of the project whose folder name holds a
space, parentheses, quotes, a ``$(...)`` and backticks (with the config's own files in such
folders too), runs, and no part of a name is ever executed: every path a rule puts into a
shell line is quoted (tests/odd_folder.py). The SLURM profile plans there too."""

import pytest
import yaml

from helpers import snakemake
from odd_folder import ODD, assert_quoted, nothing_ran, odd_clone, shell_lines


def test_the_workflow_runs_from_a_folder_whose_name_is_not_a_command(interrupted_odd_run):
    """The run of tests/odd_folder.py (killed once in training, then finished)."""
    clone = interrupted_odd_run["clone"]
    assert interrupted_odd_run["rerun_code"] == 0, interrupted_odd_run["rerun"][-5000:]
    assert (clone / "results/iter1/model/model.safetensors").is_file()
    assert (clone / "results/summary/metrics.tsv").is_file()
    printed = interrupted_odd_run["first"] + interrupted_odd_run["rerun"]
    assert assert_quoted(printed) >= 10
    nothing_ran(clone)


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_every_planned_shell_line_quotes_the_folder(tmp_path, tiny_model_dir, profile):
    """The dry run of every rule the config can plan (shards, methods side by side, question-set
    answers, a train job over two nodes under the slurm profile) prints its shell lines."""
    clone = odd_clone(tmp_path, tiny_model_dir)
    config = yaml.safe_load((clone / "tiny.yaml").read_text())
    config["shards"] = 2
    questions = clone / f"data {ODD}" / "questions.jsonl"
    questions.write_text('{"question_id": 1, "category": "x", "turns": ["Hi?", "Why?"]}\n')
    dpo = {"name": "dpo", "train": {"loss": "dpo", "dpo_beta": 0.1}}
    config["methods"] = [{"name": "sppo"}, dpo]
    config["evaluate"]["question_sets"] = {"mt_bench": str(questions)}
    if profile == "slurm":
        config["resources"] = {"train": {"nodes": 2, "gpu": 1}}
    (clone / "planned.yaml").write_text(yaml.safe_dump(config))
    planned = snakemake(
        clone, "-n", "--forceall", "--printshellcmds", "--configfile", "planned.yaml",
        "--workflow-profile", str(clone / "workflow" / "profiles" / profile),
        snakefile=clone / "workflow" / "Snakefile",
    )  # fmt: skip
    assert planned.returncode == 0, (planned.stdout + planned.stderr)[-5000:]
    printed = planned.stdout + planned.stderr
    assert len(shell_lines(printed)) == 42 and assert_quoted(printed) >= 40  # all but 2 name one
    if profile == "slurm":
        assert "srun --nodes=2" in printed
    nothing_ran(clone)
