"""Iterative DPO (Rafailov et al. 2023), the paper's first baseline: -log sigmoid(beta h) over
the margin h = l_w - l_l of the winner's and the loser's log-ratios, each summed over the
response's tokens. It pulls no log-ratio towards a target; its implicit reward is beta l_y.

With label smoothing epsilon (conservative DPO, Mitchell 2023, "A note on DPO with noisy
preferences"), each pair's preference is taken to be flipped with probability epsilon:
-(1 - epsilon) log sigmoid(beta h) - epsilon log sigmoid(-beta h), the binary cross-entropy
of sigmoid(beta h) against the label 1 - epsilon. For epsilon > 0 its minimum is at a finite
margin, h = log((1 - epsilon) / epsilon) / beta, where plain DPO's pushes h without bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sppoflow.train.methods.base import Batch, LossTerms, Parameter, TrainingMethod, unset

if TYPE_CHECKING:
    from torch import Tensor

    from sppoflow.train.settings import TrainSettings


def dpo_loss(l_w: Tensor, l_l: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """DPO's sigmoid loss over the pair, h = l_w - l_l: -log sigmoid(beta h), or with label
    smoothing epsilon -(1 - epsilon) log sigmoid(beta h) - epsilon log sigmoid(-beta h)."""
    from torch.nn.functional import logsigmoid

    z = beta * (l_w - l_l)
    if not label_smoothing:
        return -logsigmoid(z)
    return -(1.0 - label_smoothing) * logsigmoid(z) - label_smoothing * logsigmoid(-z)


@dataclass(frozen=True)
class DPO(TrainingMethod):
    def loss(self, batch: Batch, settings: TrainSettings) -> LossTerms:
        l_w, l_l, *_ = batch.pair()
        nan = unset(l_w)
        loss = dpo_loss(l_w, l_l, settings.dpo_beta, settings.dpo_label_smoothing)
        return LossTerms(loss.mean(), l_w, l_l, nan, nan, nan)

    def reward_beta(self, settings: TrainSettings) -> float:
        return settings.dpo_beta


METHOD = DPO(
    "dpo",
    "`-log sigmoid(beta h)`, h = l_w - l_l; with label smoothing epsilon > 0, "
    "`-(1 - epsilon) log sigmoid(beta h) - epsilon log sigmoid(-beta h)`",
    (
        Parameter("dpo_beta", "beta", "DPO's beta; 0.1 is common"),
        Parameter("dpo_label_smoothing", "epsilon", "conservative DPO", optional=True),
    ),
)
