"""SPPO (Wu et al. 2024): regress each response's log-ratio onto eta (P(y > pi_t | x) - 1/2).

Over a winner w and a loser l, with p_w, p_l their estimated win rates and q = P(w > l | x),
three variants (the authors' trainer's two and TRL's hard one):

    sppo:        1/2 [ (l_w - eta (p_w - 1/2))^2 + (l_l - eta (p_l - 1/2))^2 ]
    sppo_single: 1/2 [ (l_w - eta (q - 1/2))^2 + (l_l + eta (q - 1/2))^2 ]
    sppo_hard:         (l_w - eta / 2)^2 + (l_l + eta / 2)^2        (p_w = 1, p_l = 0)

and, with ``train.train_on: all``, the paper's general objective over every sampled response,
(l_y - eta (p_y - 1/2))^2. Its implicit reward is beta l_y with beta = 1/eta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sppoflow.train.methods.base import (
    ALL,
    WINNER_LOSER,
    Batch,
    LossTerms,
    Parameter,
    TrainingMethod,
)

if TYPE_CHECKING:
    from torch import Tensor

    from sppoflow.train.settings import TrainSettings

ETA = Parameter("eta", "eta", "SPPO's eta; the authors' beta is 1/eta")
VARIANTS = ("sppo", "sppo_single", "sppo_hard")


def sppo_pair_loss(
    l_w: Tensor, l_l: Tensor, p_w: Tensor, p_l: Tensor, q: Tensor, eta: float, variant: str
) -> Tensor:
    """Per-pair loss of ``variant`` over a winner w and a loser l (the module's formulas)."""
    if variant == "sppo":
        return 0.5 * ((l_w - eta * (p_w - 0.5)) ** 2 + (l_l - eta * (p_l - 0.5)) ** 2)
    if variant == "sppo_single":
        return 0.5 * ((l_w - eta * (q - 0.5)) ** 2 + (l_l + eta * (q - 0.5)) ** 2)
    if variant == "sppo_hard":
        return (l_w - eta / 2) ** 2 + (l_l + eta / 2) ** 2
    raise ValueError(f"unknown SPPO loss '{variant}' (known: {', '.join(VARIANTS)})")


def pair_targets(
    p_w: Tensor, p_l: Tensor, q: Tensor, eta: float, variant: str
) -> tuple[Tensor, Tensor]:
    """The values each variant pulls l_w and l_l towards (logged beside the log-ratios)."""
    if variant == "sppo":
        return eta * (p_w - 0.5), eta * (p_l - 0.5)
    if variant == "sppo_single":
        return eta * (q - 0.5), -eta * (q - 0.5)
    if variant == "sppo_hard":
        half = p_w.new_full(p_w.shape, eta / 2)
        return half, -half
    raise ValueError(f"unknown SPPO loss '{variant}' (known: {', '.join(VARIANTS)})")


def sppo_general_loss(l_y: Tensor, p_y: Tensor, eta: float) -> Tensor:
    """The paper's general objective over every sampled response: (l_y - eta (p_y - 1/2))^2."""
    return (l_y - eta * (p_y - 0.5)) ** 2


@dataclass(frozen=True)
class SPPO(TrainingMethod):
    def loss(self, batch: Batch, settings: TrainSettings) -> LossTerms:
        eta = settings.eta
        if settings.train_on == ALL:
            targets = eta * (batch.p - 0.5)
            winner, loser = batch.role == 1, batch.role == -1
            t_w, t_l = targets[winner], targets[loser]
            loss = sppo_general_loss(batch.logratio, batch.p, eta).mean()
            return LossTerms(
                loss, batch.logratio[winner], batch.logratio[loser], t_w, t_l, t_w - t_l
            )
        l_w, l_l, p_w, p_l, q, *_ = batch.pair()
        loss = sppo_pair_loss(l_w, l_l, p_w, p_l, q, eta, self.name).mean()
        t_w, t_l = pair_targets(p_w, p_l, q, eta, self.name)
        return LossTerms(loss, l_w, l_l, t_w, t_l, t_w - t_l)

    def reward_beta(self, settings: TrainSettings) -> float:
        return 1.0 / settings.eta


METHODS = (
    SPPO(
        "sppo",
        "`1/2 [(l_w - eta (p_w - 1/2))^2 + (l_l - eta (p_l - 1/2))^2]`; "
        "with `all`, `(l_y - eta (p_y - 1/2))^2` over every response",
        (ETA,),
        data=(WINNER_LOSER, ALL),
    ),
    SPPO("sppo_single", "`1/2 [(l_w - eta (q - 1/2))^2 + (l_l + eta (q - 1/2))^2]`", (ETA,)),
    SPPO("sppo_hard", "`(l_w - eta/2)^2 + (l_l + eta/2)^2`", (ETA,)),
)
