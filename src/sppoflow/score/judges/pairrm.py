"""PairRM (llm-blender) with plain transformers: both checkpoint layouts, batched scoring.

PairRM is DeBERTa-v3-large with four added tokens. A pair is laid out as

    [CLS] <|source|> x [SEP] [CLS] <|candidate1|> y1 [SEP] [CLS] <|candidate2|> y2 [SEP]

with the source at most 1224 tokens and each candidate at most (2048 - len(source)) // 2 tokens,
special tokens included, everything cut on the right. The last hidden states at the three prefix
tokens (h_s, h_1, h_2) feed a head, score(c) = head([h_s; h_c]), and the pair's logit is
score(y1) - score(y2): sigmoid(logit) = P(y1 > y2 | x). The model is position-biased, so the
workflow asks both orders (see ``PairwiseJudge``).

Two layouts hold the same weights (``pretrained_model.*`` for the backbone, ``head_layer.*``):
``llm-blender/PairRM-hf`` (a DeBERTa-v2 config with the prefix ids, tokenizer included) and
``llm-blender/PairRM`` (the ranker's own config.json naming its backbone, e.g.
microsoft/deberta-v3-large, whose tokenizer and config it borrows). ``load_pairrm`` reads both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import DebertaV2Config, DebertaV2Model

from sppoflow.errors import UserError
from sppoflow.models.batching import length_sorted_batches, pad
from sppoflow.models.safe_loading import load_tokenizer
from sppoflow.runtime.flops import ForwardTokens
from sppoflow.score.judges.base import PairwiseJudge

log = logging.getLogger(__name__)

SOURCE_PREFIX = "<|source|>"
CANDIDATE1_PREFIX = "<|candidate1|>"
CANDIDATE2_PREFIX = "<|candidate2|>"
CANDIDATE_PREFIX = "<|candidate|>"
PREFIXES = (SOURCE_PREFIX, CANDIDATE1_PREFIX, CANDIDATE2_PREFIX, CANDIDATE_PREFIX)
SOURCE_MAX_LENGTH = 1224
CANDIDATE_MAX_LENGTH = 412
MAX_LENGTH = SOURCE_MAX_LENGTH + 2 * CANDIDATE_MAX_LENGTH  # 2048
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
IGNORED_KEYS = ("pretrained_model.embeddings.position_ids",)  # a buffer older versions saved


class PairRMModel(nn.Module):
    """DeBERTa-v2 backbone and PairRM's head, with the checkpoints' module names."""

    def __init__(self, config: DebertaV2Config, dropout: float = 0.05, n_tasks: int = 1) -> None:
        super().__init__()
        self.config = config
        self.pretrained_model = DebertaV2Model(config)
        hidden = config.hidden_size
        self.head_layer = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_tasks),
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix_positions: torch.Tensor,
    ) -> torch.Tensor:
        """Logit of P(candidate1 > candidate2) per row; ``prefix_positions`` is (batch, 3)."""
        hidden = self.pretrained_model(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        h_source, h_first, h_second = (hidden[rows, prefix_positions[:, k]] for k in range(3))
        first = self.head_layer(torch.cat([h_source, h_first], dim=-1))
        second = self.head_layer(torch.cat([h_source, h_second], dim=-1))
        return (first - second).mean(dim=-1)


# -- tokenization ----------------------------------------------------------------------------


class PairEncoder:
    """Token ids of PairRM inputs; each text is tokenized once however many pairs it is in.

    The ids are kept until ``forget``: the judge forgets them after each call, so that the
    score stage's memory stays that of one chunk of prompts.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cls_id = tokenizer.cls_token_id
        self.sep_id = tokenizer.sep_token_id
        self.sep_token = tokenizer.sep_token
        self.prefix_ids = [tokenizer.convert_tokens_to_ids(p) for p in PREFIXES]
        self._cache: dict[str, list[int]] = {}

    def text_ids(self, text: str) -> list[int]:
        """Ids of a text as it follows a prefix token ([SEP] inside the text becomes a space)."""
        if text not in self._cache:
            clean = text.replace(self.sep_token, " ")
            ids = self.tokenizer.encode(
                CANDIDATE_PREFIX + clean, add_special_tokens=False, verbose=False
            )
            if not ids or ids[0] != self.prefix_ids[3]:
                raise UserError("the PairRM tokenizer does not split its prefix tokens off")
            self._cache[text] = ids[1:]
        return self._cache[text]

    def forget(self) -> None:
        self._cache.clear()

    def source(self, text: str) -> list[int]:
        body = self.text_ids(text)[: SOURCE_MAX_LENGTH - 3]
        return [self.cls_id, self.prefix_ids[0], *body, self.sep_id]

    def candidate(self, text: str, slot: int, budget: int) -> list[int]:
        body = self.text_ids(text)[: budget - 3]
        return [self.cls_id, self.prefix_ids[slot], *body, self.sep_id]

    def pair(self, source: str, first: str, second: str) -> tuple[list[int], tuple[int, int, int]]:
        """The pair's ids and the positions of its three prefix tokens."""
        source_ids = self.source(source)
        budget = (MAX_LENGTH - len(source_ids)) // 2
        first_ids = self.candidate(first, 1, budget)
        second_ids = self.candidate(second, 2, budget)
        positions = (1, len(source_ids) + 1, len(source_ids) + len(first_ids) + 1)
        return source_ids + first_ids + second_ids, positions


# -- the judge -------------------------------------------------------------------------------


class PairRMJudge(PairwiseJudge):
    name = "pairrm"

    def __init__(
        self,
        model: PairRMModel,
        tokenizer,
        batch_size: int = 32,
        max_batch_tokens: int = 16384,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.device, self.dtype = torch.device(device), dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.meter = ForwardTokens(self.model)
        self.encoder = PairEncoder(tokenizer)
        self.pad_id = tokenizer.pad_token_id
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens

    @torch.inference_mode()
    def pair_logits(
        self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]
    ) -> np.ndarray:
        try:
            encoded = [
                self.encoder.pair(*triple) for triple in zip(prompts, first, second, strict=True)
            ]
        finally:
            self.encoder.forget()
        logits = np.zeros(len(encoded), dtype=np.float64)
        lengths = [len(ids) for ids, _ in encoded]
        for batch in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens):
            ids, mask = pad([encoded[n][0] for n in batch], self.pad_id)
            positions = torch.tensor([encoded[n][1] for n in batch])
            out = self.model(ids.to(self.device), mask.to(self.device), positions.to(self.device))
            logits[batch] = out.float().cpu().numpy()
        return logits


# -- loading and saving ----------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    layout: str  # "hf" (llm-blender/PairRM-hf) or "original" (llm-blender/PairRM)
    config: DebertaV2Config
    tokenizer: object
    weights: Path
    dropout: float
    n_tasks: int


def read_checkpoint(folder: Path, resolve=None) -> Checkpoint:
    """Work out a PairRM folder's layout. ``resolve`` turns the original layout's backbone
    reference (a hub id or folder) into a local folder (default: the judge loader)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder}: no config.json, not a PairRM checkpoint")
    raw = json.loads(config_path.read_text())
    weights = next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None)
    if weights is None:
        raise UserError(f"{folder}: no {' or '.join(WEIGHT_FILES)}")
    if "ranker_type" in raw:
        if raw.get("ranker_type") != "pairranker":
            raise UserError(f"{folder}: ranker_type {raw.get('ranker_type')!r} is not PairRM's")
        if resolve is None:
            from sppoflow.models.hub import local_folder as resolve
        backbone = Path(resolve(raw["model_name"]))
        has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "spm.model"))
        tokenizer = load_tokenizer(folder if has_tokenizer else backbone, "judge.model")
        config = DebertaV2Config.from_pretrained(backbone)
        return Checkpoint(
            "original", config, tokenizer, weights, raw.get("drop_out", 0.05), raw.get("n_tasks", 1)
        )
    if raw.get("model_type") != "deberta-v2" or "source_prefix_id" not in raw:
        raise UserError(f"{folder}: neither PairRM layout (no ranker_type, no source_prefix_id)")
    config = DebertaV2Config.from_pretrained(folder)
    tokenizer = load_tokenizer(folder, "judge.model")
    return Checkpoint(
        "hf",
        config,
        tokenizer,
        weights,
        getattr(config, "drop_out", 0.05),
        getattr(config, "n_tasks", 1),
    )


def load_pairrm(folder: Path, resolve=None) -> tuple[PairRMModel, object, str]:
    """(model, tokenizer, layout) from either layout, in fp32 on the CPU."""
    ckpt = read_checkpoint(folder, resolve)
    tokenizer = ckpt.tokenizer
    tokenizer.add_tokens(list(PREFIXES))  # a no-op where the tokenizer already has them
    ids = [tokenizer.convert_tokens_to_ids(p) for p in PREFIXES]
    expected = [
        getattr(ckpt.config, k, None)
        for k in ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id", "cand_prefix_id")
    ]
    if ckpt.layout == "hf" and ids != expected:
        raise UserError(f"{folder}: prefix token ids {ids} differ from the config's {expected}")
    config = ckpt.config
    config.vocab_size = len(tokenizer)
    model = PairRMModel(config, ckpt.dropout, ckpt.n_tasks)
    state = _read_weights(ckpt.weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{ckpt.weights}: weights do not fit PairRM (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    log.info("loaded PairRM (%s layout) from %s", ckpt.layout, folder)
    return model.eval(), tokenizer, ckpt.layout


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    renamed = {}
    for key, value in state.items():
        if key in IGNORED_KEYS:
            continue
        key = key.removesuffix(".gamma") + ".weight" if key.endswith(".gamma") else key
        key = key.removesuffix(".beta") + ".bias" if key.endswith(".beta") else key
        renamed[key] = value
    return renamed


def save_pairrm(
    model: PairRMModel,
    tokenizer,
    folder: Path,
    layout: str = "hf",
    backbone: str = "microsoft/deberta-v3-large",
) -> None:
    """Write ``model`` in either layout (the original layout names ``backbone`` for its
    tokenizer and config, as llm-blender/PairRM does)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    dropout = model.head_layer[0].p
    n_tasks = model.head_layer[4].out_features
    if layout == "hf":
        config = model.config
        ids = [tokenizer.convert_tokens_to_ids(p) for p in PREFIXES]
        config.source_prefix_id, config.cand1_prefix_id, config.cand2_prefix_id = ids[:3]
        config.cand_prefix_id = ids[3]
        config.drop_out, config.n_tasks = dropout, n_tasks
        config.architectures = ["DebertaV2PairRM"]
        config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    elif layout == "original":
        ranker = {
            "ranker_type": "pairranker",
            "model_type": "deberta",
            "model_name": backbone,
            "source_maxlength": SOURCE_MAX_LENGTH,
            "candidate_maxlength": CANDIDATE_MAX_LENGTH,
            "n_tasks": n_tasks,
            "drop_out": dropout,
        }
        (folder / "config.json").write_text(json.dumps(ranker, indent=2) + "\n")
    else:
        raise ValueError(f"unknown PairRM layout {layout!r}")


def build(settings, folder: Path, device: torch.device, dtype: torch.dtype) -> PairRMJudge:
    model, tokenizer, _ = load_pairrm(folder)
    return PairRMJudge(
        model,
        tokenizer,
        batch_size=settings.batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        device=device,
        dtype=dtype,
    )
