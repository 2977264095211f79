"""Iterative IPO (Azar et al. 2023), the paper's second baseline: (h - 1/(2 tau))^2 over the
margin h = l_w - l_l, log-probabilities summed over the response's tokens (as the authors'
trainer does; TRL averages them). It pulls the margin towards 1/(2 tau); its implicit reward
is tau l_y, as TRL's IPO logs show it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sppoflow.train.methods.base import Batch, LossTerms, Parameter, TrainingMethod, unset

if TYPE_CHECKING:
    from torch import Tensor

    from sppoflow.train.settings import TrainSettings


def ipo_loss(l_w: Tensor, l_l: Tensor, tau: float) -> Tensor:
    """IPO's squared loss over the pair: (h - 1/(2 tau))^2, h = l_w - l_l."""
    return (l_w - l_l - 1.0 / (2.0 * tau)) ** 2


@dataclass(frozen=True)
class IPO(TrainingMethod):
    def loss(self, batch: Batch, settings: TrainSettings) -> LossTerms:
        l_w, l_l, *_ = batch.pair()
        tau = settings.ipo_tau
        target = l_w.new_full(l_w.shape, 1.0 / (2.0 * tau))
        nan = unset(l_w)
        return LossTerms(ipo_loss(l_w, l_l, tau).mean(), l_w, l_l, nan, nan, target)

    def reward_beta(self, settings: TrainSettings) -> float:
        return settings.ipo_tau


METHOD = IPO(
    "ipo",
    "`(l_w - l_l - 1/(2 tau))^2`",
    (Parameter("ipo_tau", "tau", "target margin 1/(2 tau)"),),
)
