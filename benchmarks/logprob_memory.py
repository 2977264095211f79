#!/usr/bin/env python
"""Peak memory and time of the response log-probabilities: the full log-softmax over the
vocabulary (the formula the trainer used before) against sppoflow.models.logprobs.response_logps.

A Llama with a tiny hidden size and Gemma's 256k vocabulary, so that the output layer is what
costs: each variant runs in a fresh process (peak RSS above the model's own), forward only (the
reference pass) and forward + backward (a training step), on the same batch; values must agree.

    python benchmarks/logprob_memory.py                 # 4 x 512 tokens, about 1 min on 2 cores
    python benchmarks/logprob_memory.py --batch 8 --length 1024
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VARIANTS = ("full log-softmax", "response_logps")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(variant: str, backward: bool, args) -> dict:
    """Runs in the child process: one variant, one mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sppoflow.models.logprobs import response_logps, sequence_logps

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, args.vocab, (args.batch, args.length))
    attention = torch.ones_like(ids)
    response = torch.zeros_like(ids)
    response[:, args.length // 2 :] = 1

    def run():
        if variant == "response_logps":
            return response_logps(model, ids, attention, response)
        return sequence_logps(model(input_ids=ids, attention_mask=attention).logits, ids, response)

    base = rss_mb()
    start = time.perf_counter()
    if backward:
        model.train()
        logps = run()
        logps.sum().backward()
    else:
        model.eval()
        with torch.inference_mode():
            logps = run()
    seconds = time.perf_counter() - start
    return {"peak_mb": peak_mb() - base, "seconds": seconds, "logps": logps.detach().tolist()}


def child(variant: str, backward: bool, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, *(["--backward"] if backward else [])]
    command += ["--batch", str(args.batch), "--length", str(args.length)]
    command += ["--vocab", str(args.vocab), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4, help="sequences")
    parser.add_argument(
        "--length", type=int, default=512, help="tokens per sequence (half response)"
    )
    parser.add_argument("--vocab", type=int, default=256000, help="vocabulary size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.backward, args)))
        return

    import torch

    print(
        f"torch {torch.__version__}, {args.threads} threads; {args.batch} x {args.length} tokens "
        f"(response: the second half), vocabulary {args.vocab}, hidden 64; "
        f"fp32 logits of the batch: {args.batch * args.length * args.vocab * 4 / 2**30:.2f} GiB"
    )
    for backward in (False, True):
        mode = "forward + backward (a training step)" if backward else "forward (reference pass)"
        results = {variant: child(variant, backward, args) for variant in VARIANTS}
        old, new = results["full log-softmax"], results["response_logps"]
        print(mode)
        for variant, result in results.items():
            print(f"  {variant:18s} peak {result['peak_mb']:8.0f} MiB   {result['seconds']:6.2f} s")
        pairs = list(zip(old["logps"], new["logps"], strict=True))
        difference = max(abs(a - b) for a, b in pairs)
        relative = max(abs(a - b) / abs(a) for a, b in pairs)
        memory, speed = old["peak_mb"] / new["peak_mb"], old["seconds"] / new["seconds"]
        print(
            f"  ratio (full / response_logps): peak memory x {memory:.1f}, time x {speed:.2f}; "
            f"sums of {args.length - args.length // 2} token log-probs differ by at most "
            f"{difference:.1e} "
            f"(relative {relative:.1e})"
        )


if __name__ == "__main__":
    main()
