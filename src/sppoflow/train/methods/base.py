"""What a training method declares: its settings, the data and reference log-probabilities it
reads, its loss over named terms, what it logs, and its implicit reward.

A method module defines one or more :class:`TrainingMethod` objects and the registry
(``sppoflow.train.methods``) lists them; ``train.loss`` names one. Nothing here imports
torch, so that checking a config stays light: a loss works on the batch's tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from sppoflow.errors import UserError

if TYPE_CHECKING:
    from torch import Tensor

    from sppoflow.train.settings import TrainSettings

# What a method trains on (train.train_on): each prompt's winner and loser, or every response.
WINNER_LOSER = "winner_loser"
ALL = "all"
# The reference log-probabilities a method reads: log pi_t, the round's starting policy; and
# log pi_ref, the base model's (round 0), for a method anchored to it.
POLICY = "policy"
BASE = "base"


class Batch(NamedTuple):
    """A batch's named terms, one per sequence. With ``winner_loser`` the sequences are
    [w, l] per prompt; with ``all`` every response of each prompt."""

    logratio: Tensor  # l_y = log pi_theta(y | x) - log pi_t(y | x), summed over y's tokens
    p: Tensor  # P(y > pi_t | x): y's estimated win rate
    role: Tensor  # +1 the prompt's winner, -1 its loser, 0 another response
    q: Tensor  # P(w > l | x) of the prompt's pair (NaN with ``all``)
    # d_y = log pi_t(y | x) - log pi_ref(y | x): how far the round's starting policy has moved
    # from the base model on y (NaN unless the method reads the BASE reference)
    drift: Tensor

    def pair(self) -> Pair:
        """The winner/loser terms of a ``winner_loser`` batch."""
        w, l = slice(0, None, 2), slice(1, None, 2)  # noqa: E741
        return Pair(
            self.logratio[w], self.logratio[l], self.p[w], self.p[l], self.q[w],
            self.drift[w], self.drift[l],
        )  # fmt: skip


class Pair(NamedTuple):
    l_w: Tensor
    l_l: Tensor
    p_w: Tensor
    p_l: Tensor
    q: Tensor
    d_w: Tensor
    d_l: Tensor


class LossTerms(NamedTuple):
    """A batch's loss, the winners' and losers' log-ratios, and what the loss pulls them
    towards (NaN where it pulls a margin, not each log-ratio; NaN where it has no target).
    Every field but the loss is a column of the step log, averaged over the step."""

    loss: Tensor
    logratio_winner: Tensor
    logratio_loser: Tensor
    target_winner: Tensor
    target_loser: Tensor
    target_margin: Tensor


@dataclass(frozen=True)
class Parameter:
    """A train setting a method reads: its field (``dpo_beta``), the symbol the logs give it
    (``beta``) and what a user who left it out is told. A required parameter must be given,
    and be positive (or, with ``zero_allowed``, not negative); an optional one has a default
    that turns it off (0), its range is the schema's, and the logs name it only when on."""

    field: str
    symbol: str
    hint: str
    optional: bool = False
    zero_allowed: bool = False


@dataclass(frozen=True)
class TrainingMethod:
    """One value of ``train.loss``.

    ``parameters``: the train settings it reads. ``data``: the values of ``train.train_on``
    it trains on. ``references``: the reference log-probabilities it needs, computed once
    before the first step."""

    name: str
    summary: str  # its loss in one line, for the docs' table of losses
    parameters: tuple[Parameter, ...]
    data: tuple[str, ...] = (WINNER_LOSER,)
    references: tuple[str, ...] = (POLICY,)

    def check(self, settings: TrainSettings) -> None:
        """One line for the first parameter that is missing or not positive."""
        for parameter in self.parameters:
            if parameter.optional:
                continue
            value = getattr(settings, parameter.field)
            bound = ">= 0" if parameter.zero_allowed else "> 0"
            if value is None or value < 0 or (value == 0 and not parameter.zero_allowed):
                raise UserError(
                    f"train.loss={self.name} needs train.{parameter.field} {bound} "
                    f"({parameter.hint})"
                )

    def loss(self, batch: Batch, settings: TrainSettings) -> LossTerms:
        raise NotImplementedError

    def reward_beta(self, settings: TrainSettings) -> float:
        """The scale beta of the implicit reward beta * l_y that the step log shows."""
        raise NotImplementedError

    def objective(self, settings: TrainSettings) -> str:
        """The loss and its parameters, as the logs name them ("dpo, beta 0.1")."""
        values = [
            f"{p.symbol} {getattr(settings, p.field):g}"
            for p in self.parameters
            if not p.optional or getattr(settings, p.field)
        ]
        return ", ".join([self.name, *values])


def implicit_reward(l_y: Tensor, beta: float) -> Tensor:
    """The reward a policy implicitly assigns to y under a KL-regularised objective,
    beta * l_y. DPO users read the winner's minus the loser's (the margin) and the share of
    pairs where it is positive (the accuracy)."""
    return beta * l_y


def unset(like: Tensor) -> Tensor:
    """NaN in the shape of ``like``: a term a method does not have."""
    return like.new_full(like.shape, float("nan"))
