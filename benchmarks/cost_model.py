#!/usr/bin/env python
"""What one SPPO round costs on a GPU node, from FLOP counts and throughput assumptions.

Not a measurement: a budget to check before submitting a run, with every assumption a flag.
The defaults are the Mistral-7B paper config (config/paper/mistral-7b-instruct-v0.2.yaml) on
one node of 8 H100s:

* generation: N prompts x K responses of L_out tokens on average, at R_gen output tokens per
  second per GPU (vLLM, bf16, large batch; decoding is memory-bound, so this is a throughput,
  not a FLOP count): t = N K L_out / (G R_gen);
* ranking: N K (K - 1) ordered pairs, each one PairRM pass over S = min(2048, L_prompt +
  2 L_out) tokens: 2 P_rm S + 24 layers x 3 attention terms x 4 S^2 d FLOP; t = FLOP /
  (G x peak x MFU);
* training: N prompts x 2 sequences (winner, loser) of L_train = min(1024, L_prompt + L_out)
  tokens: the reference pass (2 P per token), forward + backward (6 P) and the recomputation of
  gradient checkpointing (2 P): 10 P per token; t = FLOP / (G x peak x MFU).

    python benchmarks/cost_model.py                          # Mistral-7B, 8 x H100
    python benchmarks/cost_model.py --params 9.24e9 --response-tokens 600   # Gemma-2-9B
"""

from __future__ import annotations

import argparse

PAIRRM_PARAMS = 0.435e9  # DeBERTa-v3-large backbone with its embeddings, plus PairRM's head
PAIRRM_LAYERS, PAIRRM_HIDDEN = 24, 1024


def round_cost(args) -> dict[str, float]:
    """Seconds per stage of one round on ``args.gpus`` GPUs."""
    n, k = args.prompts, args.k
    generated = n * k * args.response_tokens
    generation = generated / (args.gpus * args.gen_tokens_per_s)
    pair_tokens = min(2048, args.prompt_tokens + 2 * args.response_tokens)
    pair_flop = 2 * PAIRRM_PARAMS * pair_tokens
    pair_flop += PAIRRM_LAYERS * 3 * 4 * pair_tokens**2 * PAIRRM_HIDDEN
    ranking = n * k * (k - 1) * pair_flop / (args.gpus * args.peak_flops * args.ranking_mfu)
    train_tokens = 2 * n * min(1024, args.prompt_tokens + args.response_tokens)
    training = 10 * args.params * train_tokens / (args.gpus * args.peak_flops * args.train_mfu)
    return {
        "generation": generation,
        "ranking": ranking,
        "training": training,
        "tokens generated": generated,
        "pairs": n * k * (k - 1),
        "tokens trained": train_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=20000, help="prompts per round (N)")
    parser.add_argument("--k", type=int, default=5, help="responses per prompt")
    parser.add_argument("--params", type=float, default=7.24e9, help="policy parameters (P)")
    parser.add_argument("--prompt-tokens", type=int, default=150, help="mean prompt tokens")
    parser.add_argument("--response-tokens", type=int, default=450, help="mean response tokens")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument(
        "--gen-tokens-per-s", type=float, default=3000, help="vLLM output tokens/s per GPU"
    )
    parser.add_argument("--peak-flops", type=float, default=989e12, help="dense bf16 FLOP/s")
    parser.add_argument("--train-mfu", type=float, default=0.35, help="ZeRO-3, one node")
    parser.add_argument("--ranking-mfu", type=float, default=0.30, help="PairRM, fp16")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    cost = round_cost(args)
    stages = ("generation", "ranking", "training")
    total = sum(cost[s] for s in stages)
    print(
        f"one round: {args.prompts} prompts x K={args.k}, policy {args.params / 1e9:.2f}B, "
        f"{args.gpus} GPUs ({args.peak_flops / 1e12:.0f} TFLOP/s peak each)"
    )
    print(
        f"  generation  {cost['generation'] / 60:6.1f} min   {cost['tokens generated']:.3g} tokens"
    )
    print(f"  ranking     {cost['ranking'] / 60:6.1f} min   {cost['pairs']:.3g} PairRM passes")
    print(f"  training    {cost['training'] / 60:6.1f} min   {cost['tokens trained']:.3g} tokens")
    print(
        f"  round       {total / 60:6.1f} min = {total * args.gpus / 3600:.1f} GPU-hours; "
        f"{args.rounds} rounds {args.rounds * total / 3600:.1f} h on the node "
        "(plus evaluation, model loading and queueing)"
    )


if __name__ == "__main__":
    main()
