"""The SPPO loss variants and the DPO and IPO baselines against values computed by hand, and
the sign of their gradients."""

import math

import pytest
import torch

from sppoflow.models.logprobs import sequence_logps
from sppoflow.train.methods import implicit_reward
from sppoflow.train.methods.dpo import dpo_loss
from sppoflow.train.methods.inpo import inpo_loss
from sppoflow.train.methods.ipo import ipo_loss
from sppoflow.train.methods.sppo import pair_targets, sppo_general_loss, sppo_pair_loss

ETA = 10.0
# l_w = 0.3, l_l = -0.2, p_w = 0.8, p_l = 0.3, q = 0.7
CASE = dict(l_w=0.3, l_l=-0.2, p_w=0.8, p_l=0.3, q=0.7)
HAND = {
    # 1/2 [ (0.3 - 10 (0.8 - 0.5))^2 + (-0.2 - 10 (0.3 - 0.5))^2 ] = 1/2 [ 7.29 + 3.24 ]
    "sppo": 0.5 * (2.7**2 + 1.8**2),
    # 1/2 [ (0.3 - 10 (0.7 - 0.5))^2 + (-0.2 + 10 (0.7 - 0.5))^2 ] = 1/2 [ 2.89 + 3.24 ]
    "sppo_single": 0.5 * (1.7**2 + 1.8**2),
    # (0.3 - 5)^2 + (-0.2 + 5)^2 = 22.09 + 23.04
    "sppo_hard": 4.7**2 + 4.8**2,
}


def tensors(**values):
    return {
        k: torch.tensor([v], dtype=torch.float64, requires_grad=k.startswith("l_"))
        for k, v in values.items()
    }


@pytest.mark.parametrize("variant", sorted(HAND))
def test_loss_matches_hand_computation(variant):
    t = tensors(**CASE)
    loss = sppo_pair_loss(t["l_w"], t["l_l"], t["p_w"], t["p_l"], t["q"], ETA, variant)
    assert loss.item() == pytest.approx(HAND[variant], rel=1e-12)


@pytest.mark.parametrize("variant", sorted(HAND))
def test_gradient_pushes_log_ratios_towards_targets(variant):
    t = tensors(**CASE)
    sppo_pair_loss(t["l_w"], t["l_l"], t["p_w"], t["p_l"], t["q"], ETA, variant).backward()
    target_w, target_l = pair_targets(t["p_w"], t["p_l"], t["q"], ETA, variant)
    # l_w sits below its target and l_l above its own (all three variants here), so
    # gradient descent must raise the winner's log-ratio and lower the loser's.
    assert target_w.item() > CASE["l_w"] and target_l.item() < CASE["l_l"]
    assert t["l_w"].grad.item() < 0
    assert t["l_l"].grad.item() > 0
    # d/dl_w of c (l_w - T)^2 is 2c (l_w - T), c = 1/2 (sppo, single) or 1 (hard)
    c = 1.0 if variant == "sppo_hard" else 0.5
    assert t["l_w"].grad.item() == pytest.approx(2 * c * (CASE["l_w"] - target_w.item()))


def test_loss_is_zero_at_the_targets_and_gradient_flips_beyond():
    p_w, p_l = torch.tensor([0.9]), torch.tensor([0.2])
    l_w = (ETA * (p_w - 0.5)).clone().requires_grad_(True)
    l_l = (ETA * (p_l - 0.5)).clone().requires_grad_(True)
    loss = sppo_pair_loss(l_w, l_l, p_w, p_l, torch.tensor([0.6]), ETA, "sppo")
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    over = (ETA * (p_w - 0.5) + 1.0).requires_grad_(True)
    sppo_pair_loss(over, l_l.detach(), p_w, p_l, torch.tensor([0.6]), ETA, "sppo").backward()
    assert over.grad.item() > 0  # above its target, the winner is pulled back down


def test_general_objective_equals_sppo_on_the_pair():
    t = tensors(**CASE)
    pair = sppo_pair_loss(t["l_w"], t["l_l"], t["p_w"], t["p_l"], t["q"], ETA, "sppo")
    general = sppo_general_loss(
        torch.cat([t["l_w"], t["l_l"]]), torch.cat([t["p_w"], t["p_l"]]), ETA
    ).mean()
    assert general.item() == pytest.approx(pair.item())


def test_unknown_variant_is_rejected():
    t = tensors(**CASE)
    with pytest.raises(ValueError, match="unknown SPPO loss 'dpo'"):
        sppo_pair_loss(t["l_w"], t["l_l"], t["p_w"], t["p_l"], t["q"], ETA, "dpo")
    with pytest.raises(ValueError, match="unknown SPPO loss 'ipo'"):
        pair_targets(t["p_w"], t["p_l"], t["q"], ETA, "ipo")


BETA, TAU = 0.1, 0.1  # h = l_w - l_l = 0.5 in CASE


def test_dpo_loss_by_hand_and_its_gradient_widens_the_margin():
    t = tensors(**CASE)
    loss = dpo_loss(t["l_w"], t["l_l"], BETA)
    # -log sigmoid(0.1 x 0.5) = log(1 + exp(-0.05))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.05)), rel=1e-12)
    loss.backward()
    # d/dl_w = -beta sigmoid(-beta h), d/dl_l = +beta sigmoid(-beta h)
    slope = BETA / (1 + math.exp(0.05))
    assert t["l_w"].grad.item() == pytest.approx(-slope, rel=1e-12)
    assert t["l_l"].grad.item() == pytest.approx(slope, rel=1e-12)


def test_dpo_keeps_pushing_however_wide_the_margin():
    l_w = torch.tensor([50.0], dtype=torch.float64, requires_grad=True)
    dpo_loss(l_w, torch.tensor([-50.0], dtype=torch.float64), BETA).backward()
    assert l_w.grad.item() < 0  # no target: gradient descent still raises the winner


def test_conservative_dpo_by_hand_and_its_loss_is_least_at_a_finite_margin():
    """Label smoothing epsilon: -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h),
    least at h* = log((1 - eps) / eps) / beta, where the gradient changes sign; eps = 0 is
    plain DPO."""
    eps = 0.2
    t = tensors(**CASE)
    loss = dpo_loss(t["l_w"], t["l_l"], BETA, eps)
    # 0.8 log(1 + exp(-0.05)) + 0.2 log(1 + exp(0.05))
    hand = 0.8 * math.log1p(math.exp(-0.05)) + 0.2 * math.log1p(math.exp(0.05))
    assert loss.item() == pytest.approx(hand, rel=1e-12)
    loss.backward()
    # d/dl_w = -beta (sigmoid(-beta h) - eps): the winner still rises while h < h*
    assert t["l_w"].grad.item() == pytest.approx(-BETA * (1 / (1 + math.exp(0.05)) - eps))
    best = math.log((1 - eps) / eps) / BETA  # 13.86...
    for h, sign in ((best - 1.0, -1), (best + 1.0, 1)):
        l_w = torch.tensor([h], dtype=torch.float64, requires_grad=True)
        dpo_loss(l_w, torch.zeros(1, dtype=torch.float64), BETA, eps).backward()
        assert math.copysign(1, l_w.grad.item()) == sign
    plain = tensors(**CASE)
    assert dpo_loss(plain["l_w"], plain["l_l"], BETA, 0.0).item() == pytest.approx(
        math.log1p(math.exp(-0.05)), rel=1e-12
    )


def test_ipo_loss_by_hand_and_its_gradient_points_at_the_target_margin():
    t = tensors(**CASE)
    loss = ipo_loss(t["l_w"], t["l_l"], TAU)
    assert loss.item() == pytest.approx((0.5 - 5.0) ** 2, rel=1e-12)  # target 1/(2 x 0.1)
    loss.backward()
    assert t["l_w"].grad.item() == pytest.approx(2 * (0.5 - 5.0))  # -9: raise the winner
    assert t["l_l"].grad.item() == pytest.approx(-2 * (0.5 - 5.0))  # +9: lower the loser
    # beyond the target margin IPO pulls back, where DPO would keep pushing
    over = torch.tensor([6.0], dtype=torch.float64, requires_grad=True)
    ipo_loss(over, torch.tensor([0.0], dtype=torch.float64), TAU).backward()
    assert over.grad.item() == pytest.approx(2.0)
    at = ipo_loss(torch.tensor([5.0]), torch.tensor([0.0]), TAU)
    assert at.item() == 0.0


def test_implicit_reward_margin():
    t = tensors(**CASE)
    margin = implicit_reward(t["l_w"], BETA) - implicit_reward(t["l_l"], BETA)
    assert margin.item() == pytest.approx(0.05)


def test_sequence_logps_sum_only_response_tokens():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    response = torch.tensor([[0, 0, 1, 1, 0]])  # tokens 2 and 3 are the response; 4 is padding
    logp = logits.log_softmax(-1)
    expected = logp[0, 1, 3] + logp[0, 2, 4]  # position t-1 predicts token t
    assert sequence_logps(logits, ids, response).item() == pytest.approx(expected.item(), rel=1e-6)


def test_inpo_by_hand_from_the_papers_three_log_ratios():
    """INPO's loss (Algorithm 1 of Zhang et al. 2025), written as the paper writes h_t from
    log pi, log pi_ref and log pi_t of the winner and loser, equals the package's form over
    l_y = log pi - log pi_t and d_y = log pi_t - log pi_ref."""
    eta, tau = 0.5, 0.1
    pi = {"w": -10.0, "l": -12.5}  # log pi_theta(y | x), summed over the tokens
    pi_t = {"w": -10.3, "l": -12.3}
    pi_ref = {"w": -11.0, "l": -12.0}
    h = (
        (pi["w"] - pi["l"])
        - tau / eta * (pi_ref["w"] - pi_ref["l"])
        - (1 - tau / eta) * (pi_t["w"] - pi_t["l"])
    )
    # h = 2.5 - 0.2 (1.0) - 0.8 (2.0) = 0.7; target 1/(2 eta) = 1
    assert h == pytest.approx(0.7)
    values = {
        "l_w": pi["w"] - pi_t["w"], "l_l": pi["l"] - pi_t["l"],
        "d_w": pi_t["w"] - pi_ref["w"], "d_l": pi_t["l"] - pi_ref["l"],
    }  # fmt: skip
    t = tensors(**values)
    loss = inpo_loss(t["l_w"], t["l_l"], t["d_w"], t["d_l"], eta, tau)
    assert loss.item() == pytest.approx((0.7 - 1.0) ** 2, rel=1e-12)
    loss.backward()  # h below its target: raise the winner, lower the loser
    assert t["l_w"].grad.item() == pytest.approx(2 * (0.7 - 1.0)) and t["l_l"].grad.item() > 0


@pytest.mark.parametrize(
    ("eta", "tau", "d_w", "d_l", "same_as"),
    [
        # round 1: pi_t is the base model, d = 0, and INPO is IPO with tau_IPO = eta
        (0.5, 0.1, 0.0, 0.0, lambda l_w, l_l, d_w, d_l: ipo_loss(l_w, l_l, 0.5)),
        # tau = 0 (the paper's "w/o KL"): IPO against pi_t, whatever the drift
        (0.5, 0.0, 0.4, -0.3, lambda l_w, l_l, d_w, d_l: ipo_loss(l_w, l_l, 0.5)),
        # tau = eta: IPO against the base model, on log pi - log pi_ref = l_y + d_y
        (0.5, 0.5, 0.4, -0.3, lambda l_w, l_l, d_w, d_l: ipo_loss(l_w + d_w, l_l + d_l, 0.5)),
    ],
)
def test_inpo_special_cases(eta, tau, d_w, d_l, same_as):
    t = tensors(**CASE)
    d = {
        "d_w": torch.tensor([d_w], dtype=torch.float64),
        "d_l": torch.tensor([d_l], dtype=torch.float64),
    }
    ours = inpo_loss(t["l_w"], t["l_l"], d["d_w"], d["d_l"], eta, tau)
    assert ours.item() == pytest.approx(
        same_as(t["l_w"], t["l_l"], d["d_w"], d["d_l"]).item(), rel=1e-12
    )
