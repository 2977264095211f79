"""The training objectives, each in its paper's names: SPPO (Wu et al. 2024) and the paper's
iterative baselines, DPO (Rafailov et al. 2023) and IPO (Azar et al. 2023).

For a response y to prompt x, the log-ratio against the round's starting policy pi_t (the
reference: the previous round's model, for every method) is

    l_y = sum_tokens log pi_theta(y | x) - sum_tokens log pi_t(y | x)

SPPO regresses it onto eta * (P(y > pi_t | x) - 1/2). DPO and IPO read only the margin of the
winner w over the loser l, h = l_w - l_l, with log-probabilities summed over the response
tokens (as the authors' trainer does for IPO; TRL averages them over tokens for IPO). The
log-probabilities themselves are computed in ``sppoflow.logprobs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sppoflow.training.settings import SPPO_LOSSES


def sppo_pair_loss(
    l_w: torch.Tensor,
    l_l: torch.Tensor,
    p_w: torch.Tensor,
    p_l: torch.Tensor,
    q: torch.Tensor,
    eta: float,
    variant: str = "sppo",
) -> torch.Tensor:
    """Per-pair loss over a winner w and a loser l (the authors' trainer's three variants).

    sppo:        1/2 [ (l_w - eta (p_w - 1/2))^2 + (l_l - eta (p_l - 1/2))^2 ]
    sppo_single: 1/2 [ (l_w - eta (q - 1/2))^2 + (l_l + eta (q - 1/2))^2 ]
    sppo_hard:         (l_w - eta / 2)^2 + (l_l + eta / 2)^2        (p_w = 1, p_l = 0)
    """
    if variant == "sppo":
        return 0.5 * ((l_w - eta * (p_w - 0.5)) ** 2 + (l_l - eta * (p_l - 0.5)) ** 2)
    if variant == "sppo_single":
        return 0.5 * ((l_w - eta * (q - 0.5)) ** 2 + (l_l + eta * (q - 0.5)) ** 2)
    if variant == "sppo_hard":
        return (l_w - eta / 2) ** 2 + (l_l + eta / 2) ** 2
    raise ValueError(f"unknown SPPO loss '{variant}' (known: {', '.join(SPPO_LOSSES)})")


def pair_targets(
    p_w: torch.Tensor, p_l: torch.Tensor, q: torch.Tensor, eta: float, variant: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The values each SPPO variant pulls l_w and l_l towards (logged beside the log-ratios)."""
    if variant == "sppo":
        return eta * (p_w - 0.5), eta * (p_l - 0.5)
    if variant == "sppo_single":
        return eta * (q - 0.5), -eta * (q - 0.5)
    if variant == "sppo_hard":
        half = torch.full_like(p_w, eta / 2)
        return half, -half
    raise ValueError(f"unknown SPPO loss '{variant}' (known: {', '.join(SPPO_LOSSES)})")


def sppo_general_loss(l_y: torch.Tensor, p_y: torch.Tensor, eta: float) -> torch.Tensor:
    """The paper's general objective over every sampled response: (l_y - eta (p_y - 1/2))^2."""
    return (l_y - eta * (p_y - 0.5)) ** 2


def dpo_loss(l_w: torch.Tensor, l_l: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's sigmoid loss over the pair: -log sigmoid(beta h), h = l_w - l_l."""
    return -F.logsigmoid(beta * (l_w - l_l))


def ipo_loss(l_w: torch.Tensor, l_l: torch.Tensor, tau: float) -> torch.Tensor:
    """IPO's squared loss over the pair: (h - 1/(2 tau))^2, h = l_w - l_l."""
    return (l_w - l_l - 1.0 / (2.0 * tau)) ** 2


def implicit_reward(l_y: torch.Tensor, beta: float) -> torch.Tensor:
    """The reward a policy implicitly assigns to y under a KL-regularised objective,
    beta * l_y. DPO users read the winner's minus the loser's (the margin) and the share of
    pairs where it is positive (the accuracy)."""
    return beta * l_y
