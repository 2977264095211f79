"""The line that explains why a job failed, brought from its log file to the console.

A stage script ends a failed run with one line ``error: ...`` (sppoflow.cli.run_stage), but
Snakemake writes the job's output to the job's log file and shows only its own report of the
failure. The workflow's ``onerror`` hook reads Snakemake's log of the run, finds each failed
job's log files and prints their explaining line, so the cause is the last thing a user reads.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

FAILED_RULE = re.compile(r"^Error in rule (\w+)")
JOB_LOGS = re.compile(r"^\s+log: (.*?)(?: \(check log file\(s\) for error details\))?$")
# the last line of a Python traceback: "ValueError: ..." or "torch.OutOfMemoryError: ..."
EXCEPTION = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b.*")


# srun --label heads each line of a job over several nodes with its task number
TASK_LABEL = re.compile(r"^\d+: ")


def explaining_line(log_text: str) -> str | None:
    """A stage's ``error:`` line; else a traceback's last line; else the last line (of a
    log written by several nodes' tasks, with their ``N: `` labels taken off)."""
    lines = [TASK_LABEL.sub("", line.strip()) for line in log_text.splitlines() if line.strip()]
    for pattern in (re.compile(r"^error: "), EXCEPTION):
        matches = [line for line in lines if pattern.match(line)]
        if matches:
            return matches[-1]
    return lines[-1] if lines else None


def failed_jobs(snakemake_log: str) -> Iterator[tuple[str, list[str]]]:
    """(rule, its log files) of each failed job Snakemake's log reports."""
    rule = None
    for line in snakemake_log.splitlines():
        started = FAILED_RULE.match(line)
        if started:
            rule = started.group(1)
            continue
        logs = JOB_LOGS.match(line)
        if rule and logs:
            yield rule, [p.strip() for p in logs.group(1).split(", ")]
            rule = None


def failure_lines(snakemake_logs: Iterable[str | Path]) -> list[str]:
    """One line per failed job: ``rule (log file): the explaining line``."""
    lines: list[str] = []
    for snakemake_log in snakemake_logs:
        path = Path(snakemake_log)
        if not path.is_file():
            continue
        for rule, logs in failed_jobs(path.read_text(errors="replace")):
            for log in logs:
                log_path = Path(log)
                text = log_path.read_text(errors="replace") if log_path.is_file() else ""
                reason = explaining_line(text)
                if reason:
                    line = f"{rule} ({log}): {reason}"
                    if line not in lines:
                        lines.append(line)
                    break
    return lines


def print_failures(snakemake_logs: Iterable[str | Path], stream: TextIO = sys.stderr) -> None:
    """After a failed run: each failed job's rule, log file and the line that says why."""
    lines = failure_lines(snakemake_logs)
    if lines:
        print("\nFailed jobs, with the line of their log that says why:", file=stream)
        for line in lines:
            print(f"  {line}", file=stream)
