"""The SPPO objective (Wu et al. 2024, README, "The pipeline"), in the paper's names.

For a response y to prompt x, the log-ratio against the round's starting policy pi_t is

    l_y = sum_tokens log pi_theta(y | x) - sum_tokens log pi_t(y | x)

and SPPO regresses it onto eta * (P(y > pi_t | x) - 1/2). The log-probabilities themselves are
computed in ``sppoflow.logprobs``.
"""

from __future__ import annotations

import torch

LOSSES = ("sppo", "sppo_single", "sppo_hard")


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
    raise ValueError(f"unknown SPPO loss '{variant}' (known: {', '.join(LOSSES)})")


def pair_targets(
    p_w: torch.Tensor, p_l: torch.Tensor, q: torch.Tensor, eta: float, variant: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The values each variant pulls l_w and l_l towards (logged beside the log-ratios)."""
    if variant == "sppo":
        return eta * (p_w - 0.5), eta * (p_l - 0.5)
    if variant == "sppo_single":
        return eta * (q - 0.5), -eta * (q - 0.5)
    if variant == "sppo_hard":
        half = torch.full_like(p_w, eta / 2)
        return half, -half
    raise ValueError(f"unknown SPPO loss '{variant}' (known: {', '.join(LOSSES)})")


def sppo_general_loss(l_y: torch.Tensor, p_y: torch.Tensor, eta: float) -> torch.Tensor:
    """The paper's general objective over every sampled response: (l_y - eta (p_y - 1/2))^2."""
    return (l_y - eta * (p_y - 0.5)) ** 2
