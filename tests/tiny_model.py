"""A 2-layer, hidden-size-32 Llama with random weights and the embedded SmolLM2 tokenizer and
chat template: the policy of the tiny test config (.test/config/config.yaml), built offline.

    python tests/tiny_model.py .test/resources/tiny-llama
"""

from __future__ import annotations

import argparse
from pathlib import Path


def tiny_llama_config(tokenizer, **overrides):
    """A 2-layer, hidden-size-32 Llama config over ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig

    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaConfig(**{**shape, **overrides})


def build_tiny_llama(folder: Path, tokenizer, seed: int = 0) -> Path:
    """The tiny Llama, saved with ``tokenizer`` (its vocabulary and template) to ``folder``."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = tiny_llama_config(
        tokenizer,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def embedded_tokenizer():
    from sppoflow.models import load_tokenizer, resolve_source

    return load_tokenizer(resolve_source("embedded:smollm2-135m-instruct"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to save the model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args()
    build_tiny_llama(args.folder, embedded_tokenizer(), args.seed)
    print(f"saved the tiny Llama to {args.folder}")
