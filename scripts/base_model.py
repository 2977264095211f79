#!/usr/bin/env python
"""base_model stage: turn the configured policy into round 0's model folder.

The policy can be the embedded SmolLM2-135M-Instruct (``embedded:smollm2-135m-instruct``),
a local folder or .gguf file, or a hub id. The output holds safetensors weights (in the
source's precision unless --dtype says otherwise), the tokenizer and its chat template.

Example:
    python scripts/base_model.py --model embedded:smollm2-135m-instruct --out results/iter0/model
"""

import argparse

import _bootstrap  # noqa: F401
from sppoflow.cli import parser_for, run_stage
from sppoflow.models.sources import resolve_source


def main(args) -> None:
    resolve_source(args.model)  # a path that is no model is refused before torch loads
    from sppoflow.models.loading import import_policy

    import_policy(
        args.model,
        args.out,
        revision=args.revision,
        chat_template=args.chat_template,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--model", required=True, help="embedded:<name>, folder, .gguf or hub id")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    parser.add_argument("--chat-template", default=None, help="a .jinja file to use instead")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="precision on disk (auto: the source's)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the model's own Python code (auto_map in its config); recorded in the "
        "output folder for the later stages",
    )
    parser.add_argument("--out", required=True, help="output model folder")
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
