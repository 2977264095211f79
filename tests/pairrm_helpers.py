"""PairRM-shaped checkpoints with random weights, in both layouts, built offline.

The tokenizer is word-level with DeBERTa-v3's special-token layout ([PAD] 0, [CLS] 1, [SEP] 2,
[UNK] 3, words w4..w127999, [MASK] 128000), so the four PairRM prefix tokens get the real ids
128001-128004 and any text's ids are known: "w57 w9" is [57, 9].
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import DebertaV2Config, PreTrainedTokenizerFast

from sppoflow.score.judges.pairrm import PREFIXES, PairRMModel, save_pairrm

N_BASE_TOKENS = 128001
SPECIALS = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)


def wordlevel_tokenizer() -> PreTrainedTokenizerFast:
    vocab = dict(SPECIALS)
    vocab.update({f"w{n}": n for n in range(4, N_BASE_TOKENS - 1)})
    vocab["[MASK]"] = N_BASE_TOKENS - 1
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=2048,
    )


def deberta_v3_config(vocab_size: int, **dims) -> DebertaV2Config:
    """DeBERTa-v3-large's architecture settings at the given dimensions."""
    return DebertaV2Config(
        vocab_size=vocab_size,
        max_position_embeddings=512,
        type_vocab_size=0,
        relative_attention=True,
        position_buckets=256,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        hidden_act="gelu",
        layer_norm_eps=1e-7,
        pad_token_id=0,
        **dims,
    )


def random_pairrm(
    dims: dict = TINY, seed: int = 0, std: float | None = 0.2
) -> tuple[PairRMModel, PreTrainedTokenizerFast]:
    """Random weights; ``std`` widens the tiny model's init so its scores spread (None keeps
    PyTorch's default init, which keeps a 24-layer model's activations in range)."""
    tokenizer = wordlevel_tokenizer()
    tokenizer.add_tokens(list(PREFIXES))
    torch.manual_seed(seed)
    model = PairRMModel(deberta_v3_config(len(tokenizer), **dims))
    if std is not None:
        for p in model.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=std)
    return model.eval(), tokenizer


def save_both_layouts(
    root: Path, dims: dict = TINY, seed: int = 0, backbone_ref: str | None = None
):
    """(hf_folder, original_folder, backbone_folder) holding the same random weights.

    The original layout names its backbone like llm-blender/PairRM names
    microsoft/deberta-v3-large: here a local folder with the base tokenizer and config
    (or ``backbone_ref``, a hub id the caller makes resolvable).
    """
    model, tokenizer = random_pairrm(dims, seed)
    backbone = root / "deberta-v3-backbone"
    base_tokenizer = wordlevel_tokenizer()
    base_tokenizer.save_pretrained(backbone)
    deberta_v3_config(128100, **dims).save_pretrained(backbone)  # v3's config says 128100
    save_pairrm(model, tokenizer, root / "PairRM-hf", layout="hf")
    save_pairrm(
        model, tokenizer, root / "PairRM", layout="original", backbone=backbone_ref or str(backbone)
    )
    return root / "PairRM-hf", root / "PairRM", backbone
