"""The registry of training methods: what the config allows, what the docs list and what
each method checks all come from it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sppoflow.errors import UserError
from sppoflow.schema import load_schema
from sppoflow.train.methods import LOSSES, REGISTRY, TRAIN_ON, Batch, docs_table, method_named
from sppoflow.train.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


def test_the_schema_allows_exactly_the_registered_methods():
    train = load_schema()["properties"]["train"]["properties"]
    assert train["loss"]["enum"] == list(LOSSES)
    assert train["train_on"]["enum"] == list(TRAIN_ON)
    for method in REGISTRY.values():
        for parameter in method.parameters:
            assert parameter.field in train, f"{method.name}: train.{parameter.field}"


def test_the_docs_table_of_methods_is_the_registrys():
    text = (ROOT / "docs" / "methods.md").read_text()
    assert docs_table() in text
    listed = re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE)
    assert listed == list(LOSSES)


def test_an_unknown_method_is_one_line_naming_the_known_ones():
    with pytest.raises(UserError, match=r"train.loss: unknown value 'nash' \(known: sppo, "):
        method_named("nash")


@pytest.mark.parametrize("name", LOSSES)
def test_each_method_checks_its_parameters(name):
    """Each required parameter, missing or out of its range while the others are valid, is a
    one-line error naming it."""
    method = REGISTRY[name]
    required = [p for p in method.parameters if not p.optional]
    for parameter in required:
        valid = {p.field: 1.0 for p in required}
        bad = -1.0 if parameter.zero_allowed else 0.0
        bound = ">= 0" if parameter.zero_allowed else "> 0"
        for value in (None, bad):
            settings = TrainSettings(loss=name, **{**valid, parameter.field: value})
            with pytest.raises(UserError, match=f"train.{parameter.field} {bound}"):
                settings.check()
        TrainSettings(loss=name, **valid).check()


def test_inpo_takes_tau_from_zero_up_to_eta():
    TrainSettings(loss="inpo", inpo_eta=0.005, inpo_tau=0.0).check()  # the paper's "w/o KL"
    settings = TrainSettings(loss="inpo", inpo_eta=0.005, inpo_tau=0.005 / 3)
    settings.check()
    assert settings.objective() == "inpo, eta 0.005, tau 0.00166667"
    with pytest.raises(UserError, match=r"train.inpo_tau=0.01 is above train.inpo_eta=0.005"):
        TrainSettings(loss="inpo", inpo_eta=0.005, inpo_tau=0.01).check()


def test_an_optional_parameter_is_off_by_default_and_named_only_when_on():
    """train.dpo_label_smoothing: 0 by default, plain DPO with the objective it always had;
    set, the logs name it; the schema holds its range."""
    from sppoflow.config.validation import validate

    plain = TrainSettings(loss="dpo", dpo_beta=0.1)
    plain.check()
    assert plain.dpo_label_smoothing == 0 and plain.objective() == "dpo, beta 0.1"
    smoothed = TrainSettings(loss="dpo", dpo_beta=0.1, dpo_label_smoothing=0.1)
    assert smoothed.objective() == "dpo, beta 0.1, epsilon 0.1"
    with pytest.raises(UserError, match=r"train.dpo_label_smoothing: 0.5 is greater than or"):
        validate({"train": {"loss": "dpo", "dpo_beta": 0.1, "dpo_label_smoothing": 0.5}})


def test_a_method_that_cannot_train_on_every_response_says_which_can():
    with pytest.raises(UserError, match=r"train.loss=dpo cannot train on it; set train.loss=sppo"):
        TrainSettings(loss="dpo", dpo_beta=0.1, train_on="all").check()


@pytest.mark.parametrize("name", LOSSES)
def test_each_method_logs_the_winner_and_loser_of_every_pair(name):
    """A batch of two prompts ([w, l] each): every method's terms have one value per pair."""
    settings = TrainSettings(
        loss=name, eta=2.0, dpo_beta=0.1, ipo_tau=0.1, inpo_eta=0.1, inpo_tau=0.05
    )
    logratio = torch.tensor([0.3, -0.2, 0.1, 0.4])
    win_rates, roles = torch.tensor([0.8, 0.3, 0.6, 0.5]), torch.tensor([1, -1, 1, -1])
    q, drift = torch.tensor([0.7, 0.7, 0.55, 0.55]), torch.tensor([0.2, -0.1, 0.0, 0.3])
    batch = Batch(logratio, win_rates, roles, q, drift)
    terms = REGISTRY[name].loss(batch, settings)
    assert terms.loss.shape == ()
    assert torch.equal(terms.logratio_winner, logratio[0::2])
    assert torch.equal(terms.logratio_loser, logratio[1::2])
    assert all(t.shape == (2,) for t in terms[1:])


def test_checking_a_config_does_not_import_torch():
    code = (
        "import sys; from sppoflow.config.validation import validate; "
        "validate({'train': {'loss': 'dpo', 'dpo_beta': 0.1}}); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
