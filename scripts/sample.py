#!/usr/bin/env python
"""sample stage: K responses per prompt from a round's policy (transformers or vLLM).

Reads a prompts table (prompt_id, prompt) and writes a samples table with token counts and
finish reasons. The model's chat template is applied once; generation is seeded. The
transformers backend batches with left padding; the vLLM backend (--backend vllm, its own
environment envs/vllm.yaml) sends each prompt's K samples as one request and spans
--tensor-parallel-size GPUs. Also used, with --k 1, to generate the evaluation responses.
With --shards N, --shard s generates its share only (transformers: generation batches s,
s + N, ... of the plan over all prompts, so the shards' rows equal one job's; vLLM: prompts
s, s + N, ..., each seeded by its prompt id); scripts/gather.py joins the shards.

Example:
    python scripts/sample.py --model results/iter0/model --k 4 \\
        --prompts results/prompts/train_iter1.parquet --out /tmp/samples.parquet
"""

import time

import _bootstrap  # noqa: F401
from sppoflow.cli import add_settings, add_shard_arguments, parser_for, run_stage, settings_from
from sppoflow.errors import UserError
from sppoflow.runtime.shards import check_shard
from sppoflow.runtime.throughput import log_compute_on, log_rate
from sppoflow.sample.settings import SamplingSettings
from sppoflow.tables import PROMPTS, SAMPLES, read_table, write_table


def main(args) -> None:
    settings = settings_from(SamplingSettings, args)
    if settings.k < 1:
        raise UserError(f"--k must be 1 or more, got {settings.k}")
    check_shard(args.shard, args.shards)
    prompts = read_table(args.prompts, PROMPTS)
    shard = {"shard": args.shard, "shards": args.shards}
    if settings.backend == "vllm":
        import torch

        from sppoflow.runtime.flops import folder_shapes
        from sppoflow.sample.vllm_backend import generate_vllm, on_cpu, vllm_dtype

        start = time.perf_counter()
        samples = generate_vllm(args.model, prompts, settings, args.system_prompt, **shard)
        seconds = time.perf_counter() - start
        what = "vLLM, its engine start included"
        cpu = on_cpu()
        device = torch.device("cpu" if cpu else "cuda")
        dtype = getattr(torch, vllm_dtype(settings.dtype, cpu))
        shapes = folder_shapes(args.model)
    else:
        # torch and transformers load here, so that --help and a bad argument answer at once
        from sppoflow.models.loading import load_policy
        from sppoflow.runtime.devices import resolve_device, resolve_dtype
        from sppoflow.runtime.flops import linear_shapes
        from sppoflow.sample.transformers_backend import generate

        device = resolve_device(settings.device)
        model, tokenizer = load_policy(args.model, resolve_dtype(settings.dtype, device))
        model.to(device).eval()
        start = time.perf_counter()
        samples = generate(model, tokenizer, prompts, settings, args.system_prompt, **shard)
        seconds = time.perf_counter() - start
        what = f"transformers on {device}, the model's load not counted"
        dtype, shapes = next(model.parameters()).dtype, linear_shapes(model)
    log_generation(samples, seconds, what, device, dtype, shapes)
    write_table(samples, args.out, SAMPLES)


def log_generation(samples, seconds: float, what: str, device, dtype, shapes) -> None:
    """The generation's rate, and its arithmetic against the device's peak: every prompt's
    tokens once (the K samples of a prompt can share its prefill) and every generated token."""
    from sppoflow.runtime.flops import forward_flops_per_token

    tokens = int(samples["response_tokens"].sum())
    log_rate("generation", tokens, "generated tokens", seconds, what)
    prompt_tokens = int(samples.drop_duplicates("prompt_id")["prompt_tokens"].sum())
    flops = forward_flops_per_token(shapes) * (prompt_tokens + tokens)
    log_compute_on("generation", flops, seconds, device, dtype, shapes)


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--model", required=True, help="policy model folder")
    parser.add_argument("--prompts", required=True, help="prompts parquet (prompt_id, prompt)")
    parser.add_argument("--out", required=True, help="samples parquet to write")
    parser.add_argument("--system-prompt", default=None, help="system message, if any")
    add_settings(parser, SamplingSettings)
    add_shard_arguments(parser, "generation batches (vllm: prompts)")
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
