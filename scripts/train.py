#!/usr/bin/env python
"""train stage: one SPPO round, from the round's starting policy pi_t to pi_{t+1}.

Reads the round's samples (for the exact sampled token ids), pairs and response win rates,
precomputes the reference log-probabilities once, trains with transformers' Trainer and
writes the model (safetensors + tokenizer) and a per-step log. An interrupted run with the
same inputs resumes from the last checkpoint in --state-dir: one is saved every
--checkpoint-steps steps, and on SIGTERM or SIGUSR1 (a SLURM time limit, scancel, preemption)
after the current optimizer step, the process then exiting with 128 + the signal's number
(under accelerate launch the launcher's status is non-zero).
For several GPUs (or CPU processes), start it with `accelerate launch --num_processes N
scripts/train.py ...`, optionally with --config_file config/accelerate/deepspeed_zero3.yaml or
fsdp.yaml; set --global-batch-size to keep the optimizer step the same whatever N is.
The step metrics also go to TensorBoard and/or W&B (--report-to), their files in --tracking-dir,
which outlives --state-dir.

Example:
    python scripts/train.py --model results/iter0/model --samples results/iter1/samples.parquet \\
        --pairs-table results/iter1/pairs.parquet \\
        --win-rates results/iter1/response_win_rates.parquet --out /tmp/model \\
        --log /tmp/train_log.csv --state-dir /tmp/train_state
"""

import sys
from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.cli import add_settings, parser_for, run_stage, settings_from
from sppoflow.train.settings import TrainSettings
from sppoflow.train.tracking import report_targets


def main(args) -> None:
    settings = settings_from(TrainSettings, args)
    report_targets(settings.report_to)  # a tracker that is not installed: before torch loads
    # torch and transformers load here, so that --help and a bad argument answer at once
    from sppoflow.train.data import RoundTables
    from sppoflow.train.resume import TrainingStopped
    from sppoflow.train.round import end_process_group, train_round

    try:
        train_round(
            settings,
            Path(args.model),
            RoundTables(Path(args.samples), Path(args.pairs_table), Path(args.win_rates)),
            out_dir=Path(args.out),
            log_path=Path(args.log),
            state_dir=Path(args.state_dir),
            system_prompt=args.system_prompt,
            tracking_dir=Path(args.tracking_dir) if args.tracking_dir else None,
            run_group=args.run_group,
            run_name=args.run_name,
            base_model_dir=Path(args.base_model) if args.base_model else None,
        )
    except TrainingStopped as stopped:  # every process saved the checkpoint, together
        end_process_group()
        print(f"stopped: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signum)
    end_process_group()


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--model", required=True, help="starting policy pi_t (model folder)")
    parser.add_argument(
        "--base-model",
        default=None,
        help="round 0's model pi_ref, for a method anchored to it (train.loss inpo)",
    )
    parser.add_argument("--samples", required=True, help="samples parquet of the round")
    parser.add_argument("--pairs-table", required=True, help="pairs parquet of the round")
    parser.add_argument("--win-rates", required=True, help="response win rates parquet")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--log", required=True, help="per-step training log (CSV) to write")
    parser.add_argument("--state-dir", required=True, help="resumable state (not an output)")
    parser.add_argument(
        "--tracking-dir",
        default=None,
        help="TensorBoard event files and offline W&B runs; its name names the run "
        "(default: tracking/ beside --out)",
    )
    parser.add_argument("--run-group", default=None, help="W&B group of this run's rounds")
    parser.add_argument(
        "--run-name",
        default=None,
        help="names the run in the trackers (default: --tracking-dir's name)",
    )
    parser.add_argument("--system-prompt", default=None, help="system message, as in sampling")
    add_settings(parser, TrainSettings)
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
