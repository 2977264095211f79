"""Iterative DPO (Rafailov et al. 2023), the paper's first baseline: -log sigmoid(beta h) over
the margin h = l_w - l_l of the winner's and the loser's log-ratios, each summed over the
response's tokens. It pulls no log-ratio towards a target; its implicit reward is beta l_y."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sppoflow.train.methods.base import Batch, LossTerms, Parameter, TrainingMethod, unset

if TYPE_CHECKING:
    from torch import Tensor

    from sppoflow.train.settings import TrainSettings


def dpo_loss(l_w: Tensor, l_l: Tensor, beta: float) -> Tensor:
    """DPO's sigmoid loss over the pair: -log sigmoid(beta h), h = l_w - l_l."""
    from torch.nn.functional import logsigmoid

    return -logsigmoid(beta * (l_w - l_l))


@dataclass(frozen=True)
class DPO(TrainingMethod):
    def loss(self, batch: Batch, settings: TrainSettings) -> LossTerms:
        l_w, l_l, *_ = batch.pair()
        nan = unset(l_w)
        return LossTerms(dpo_loss(l_w, l_l, settings.dpo_beta).mean(), l_w, l_l, nan, nan, nan)

    def reward_beta(self, settings: TrainSettings) -> float:
        return settings.dpo_beta


METHOD = DPO(
    "dpo",
    "`-log sigmoid(beta (l_w - l_l))`",
    (Parameter("dpo_beta", "beta", "DPO's beta; 0.1 is common"),),
)
