"""INPO, Iterative Nash Policy Optimization (Zhang et al., ICLR 2025, arXiv 2407.00617): online
mirror descent towards the Nash policy of the KL-regularised preference game, learnt from
preferred/dispreferred pairs without estimating any win rate.

Its update (the paper's Eq. 5), with eta the inverse step size and tau the KL weight towards
the base model pi_ref:

    pi_{t+1}(y) ∝ exp(P(y > pi_t) / eta) pi_ref(y)^(tau/eta) pi_t(y)^(1 - tau/eta),

is the minimiser of the squared loss of its Algorithm 1 (from Eq. 8), over the round's
winner w and loser l:

    ( h_t(w, l) - 1/(2 eta) )^2,
    h_t(w, l) = log pi(w)/pi(l) - (tau/eta) log pi_ref(w)/pi_ref(l)
                - (1 - tau/eta) log pi_t(w)/pi_t(l).

In this package's terms, with l_y = log pi(y) - log pi_t(y) (the log-ratio every method
trains) and d_y = log pi_t(y) - log pi_ref(y) (the round's drift from the base model),
h_t = (l_w - l_l) + (tau/eta) (d_w - d_l): the margin l_w - l_l is pulled towards
1/(2 eta) - (tau/eta) (d_w - d_l). In round 1, pi_t = pi_ref and the loss is IPO's with
tau_IPO = eta; tau = 0 is IPO against pi_t every round (the paper's "w/o KL"); tau = eta is
IPO against the base model on the round's samples. Log-probabilities are summed over the
response's tokens, as the authors' trainer does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sppoflow.errors import UserError
from sppoflow.train.methods.base import (
    BASE,
    POLICY,
    Batch,
    LossTerms,
    Parameter,
    TrainingMethod,
    unset,
)

if TYPE_CHECKING:
    from torch import Tensor

    from sppoflow.train.settings import TrainSettings


def inpo_target_margin(d_w: Tensor, d_l: Tensor, eta: float, tau: float) -> Tensor:
    """The value INPO pulls the margin l_w - l_l towards: 1/(2 eta) - (tau/eta) (d_w - d_l)."""
    return 1.0 / (2.0 * eta) - (tau / eta) * (d_w - d_l)


def inpo_loss(l_w: Tensor, l_l: Tensor, d_w: Tensor, d_l: Tensor, eta: float, tau: float) -> Tensor:
    """INPO's squared loss over the pair: (h_t - 1/(2 eta))^2 with
    h_t = (l_w - l_l) + (tau/eta) (d_w - d_l)."""
    return (l_w - l_l - inpo_target_margin(d_w, d_l, eta, tau)) ** 2


@dataclass(frozen=True)
class INPO(TrainingMethod):
    def check(self, settings: TrainSettings) -> None:
        super().check(settings)
        if settings.inpo_tau > settings.inpo_eta:
            raise UserError(
                f"train.inpo_tau={settings.inpo_tau:g} is above train.inpo_eta="
                f"{settings.inpo_eta:g}: the weight 1 - tau/eta on the round's starting policy "
                "would be negative (the paper sets tau = eta/3)"
            )

    def loss(self, batch: Batch, settings: TrainSettings) -> LossTerms:
        l_w, l_l, _, _, _, d_w, d_l = batch.pair()
        eta, tau = settings.inpo_eta, settings.inpo_tau
        target = inpo_target_margin(d_w, d_l, eta, tau)
        nan = unset(l_w)
        return LossTerms(((l_w - l_l - target) ** 2).mean(), l_w, l_l, nan, nan, target)

    def reward_beta(self, settings: TrainSettings) -> float:
        # in round 1 the loss is IPO's with tau_IPO = eta, whose implicit reward is eta l_y
        return settings.inpo_eta


METHOD = INPO(
    "inpo",
    "`(l_w - l_l + (tau/eta) (d_w - d_l) - 1/(2 eta))^2`, d_y = log pi_t(y) - log pi_ref(y)",
    (
        Parameter("inpo_eta", "eta", "INPO's eta, the inverse step size; the paper's is 0.005"),
        Parameter("inpo_tau", "tau", "the KL weight towards the base model; eta/3 in the paper",
                  zero_allowed=True),
    ),
    references=(POLICY, BASE),
)  # fmt: skip
