#!/usr/bin/env python
"""fetch stage: put a hub model into the local hub cache, so that model jobs run offline.

The workflow runs it on the submit host (a local rule) for the policy and for the judge,
before any cluster job; the model jobs then run with HF_HUB_OFFLINE=1. Writes a small JSON
record (kind, revision, the commit that was fetched, its cache folder). Embedded models and
local folders need nothing and are only recorded. A gated model needs HF_TOKEN (or
`huggingface-cli login`) on this machine.

Example:
    python scripts/fetch.py --model mistralai/Mistral-7B-Instruct-v0.2 --out /tmp/policy.json
"""

import json

import _bootstrap  # noqa: F401
from sppoflow.atomic import write_text_atomically
from sppoflow.cli import parser_for, run_stage
from sppoflow.models.hub import fetch


def main(args) -> None:
    record = fetch(args.model, args.revision)
    write_text_atomically(args.out, json.dumps(record, indent=2) + "\n")


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--model", required=True, help="embedded:<name>, a local path or hub id")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit")
    parser.add_argument("--out", required=True, help="JSON record to write")
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
