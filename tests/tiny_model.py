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


def build_tiny_gpm(
    folder: Path, tokenizer, value_head_dim: int = 8, prompt_head: bool = True, seed: int = 0
) -> Path:
    """A tiny GPM checkpoint in the published layout: a causal LM's ``model.*`` weights with
    ``value_head.weight`` [d, hidden] and, with ``prompt_head``, ``prompt_head.weight``
    [d/2, hidden] (no biases), config architectures ``CustomRewardModel``."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = tiny_llama_config(
        tokenizer, max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    hidden = config.hidden_size
    weights["value_head.weight"] = torch.randn(value_head_dim, hidden) / (hidden + 1) ** 0.5
    if prompt_head:
        weights["prompt_head.weight"] = torch.randn(value_head_dim // 2, hidden)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config.architectures = ["CustomRewardModel"]
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_stopping_llama(folder: Path, tokenizer, stop_logit: float = 7.0, seed: int = 0) -> Path:
    """A tiny Llama that vLLM's CPU kernels take (head size 64) and that ends its responses.

    A random model almost never samples EOS among ~49k tokens, so nothing would test how a
    stop is kept. Here hidden dimension 0 carries a constant: every token embedding has 1.0
    there and no layer writes to it, so after the final RMSNorm it is about sqrt(hidden)
    whatever the text; the output row of EOS reads it with weight ``stop_logit`` / sqrt(hidden)
    and every other row ignores it. EOS then gets a logit of about ``stop_logit`` against
    logits near 0: at temperature 0.7, 24 of 40 responses of at most 12 tokens ended with
    EOS (transformers backend, measured).
    """
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = tiny_llama_config(
        tokenizer,
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[tokenizer.eos_token_id, 0] = stop_logit / config.hidden_size**0.5
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def embedded_tokenizer():
    from sppoflow.models.loading import resolve_source, source_tokenizer

    return source_tokenizer(resolve_source("embedded:smollm2-135m-instruct"))


def tiny_reward_model(folder, tokenizer, num_labels=1):
    """A tiny Llama with a classification head (a reward model), saved with ``tokenizer``."""
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    config = tiny_llama_config(tokenizer, num_labels=num_labels)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to save the model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args()
    build_tiny_llama(args.folder, embedded_tokenizer(), args.seed)
    print(f"saved the tiny Llama to {args.folder}")
