"""The train stage on the tiny model: data layout, reference log-probs, log, save and resume."""

import json
import shutil

import pandas as pd
import pytest
import torch

from helpers import weights
from sppoflow.errors import UserError
from sppoflow.models.loading import load_policy
from sppoflow.train.data import build_examples
from sppoflow.train.resume import (
    LOG_COLUMNS,
    prepare_state_dir,
)
from sppoflow.train.round import train
from training_data import N_PROMPTS, round_tables, run_training, settings


def test_examples_hold_winner_then_loser_and_truncate_prompts_from_the_left(embedded_tokenizer):
    samples, pairs, responses = round_tables(embedded_tokenizer)
    s = settings(max_prompt_length=8, max_length=12)
    examples = build_examples(embedded_tokenizer, samples, pairs, responses, s)
    assert len(examples) == N_PROMPTS
    first = examples[0]
    assert len(first["prompt_ids"]) == 8
    assert embedded_tokenizer.decode(first["prompt_ids"]).endswith("assistant\n")
    assert all(len(r) <= 4 for r in first["response_ids"])  # 12 - 8 tokens left
    pair = pairs.set_index("prompt_id").loc[first["prompt_id"]]
    assert first["p"] == pytest.approx([pair.p_winner, pair.p_loser])
    assert first["role"] == [1, -1]


def test_all_responses_mode_carries_every_response(embedded_tokenizer):
    samples, pairs, responses = round_tables(embedded_tokenizer)
    examples = build_examples(
        embedded_tokenizer, samples, pairs, responses, settings(train_on="all")
    )
    assert all(len(e["response_ids"]) == 3 for e in examples)
    assert all(sorted(e["role"]) == [-1, 0, 1] for e in examples)


def test_training_logs_every_step_and_saves_a_loadable_model(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    out, log = run_training(tmp_path, tiny_model_dir, embedded_tokenizer, epochs=4)
    assert list(log.columns) == list(LOG_COLUMNS)
    assert log.step.tolist() == list(range(1, 13))
    # the reference is the starting model: before the first update every log-ratio is 0
    assert log.logratio_winner.iloc[0] == pytest.approx(0.0, abs=1e-4)
    assert log.logratio_loser.iloc[0] == pytest.approx(0.0, abs=1e-4)
    # and training moves the winners up and the losers down, towards their targets
    assert log.logratio_winner.iloc[-4:].mean() > 0.5
    assert log.logratio_loser.iloc[-4:].mean() < -0.5
    assert log.loss.iloc[-4:].mean() < log.loss.iloc[:3].mean()
    assert (log.target_winner > 0).all() and (log.target_loser < 0).all()
    model, _ = load_policy(out)
    start, _ = load_policy(tiny_model_dir)
    assert not torch.equal(model.lm_head.weight, start.lm_head.weight)
    assert not (tmp_path / "state").exists()  # the resumable state is cleared after success


def test_max_steps_caps_the_round_and_its_schedule(tmp_path, tiny_model_dir, embedded_tokenizer):
    _, capped = run_training(tmp_path / "capped", tiny_model_dir, embedded_tokenizer, epochs=2,
                             max_steps=5, lr_scheduler="linear")  # fmt: skip
    assert capped.step.tolist() == [1, 2, 3, 4, 5]  # 6 steps without the cap
    # the linear schedule spans the 5 steps: its learning rate falls by a fifth a step
    assert capped.learning_rate.tolist() == pytest.approx([1e-3 * (5 - s) / 5 for s in range(5)])
    _, above = run_training(tmp_path / "above", tiny_model_dir, embedded_tokenizer, epochs=2,
                            max_steps=50)  # fmt: skip
    assert above.step.tolist() == list(range(1, 7))  # a cap above the plan changes nothing


@pytest.mark.parametrize("variant", ["sppo_single", "sppo_hard"])
def test_other_variants_train(tmp_path, tiny_model_dir, embedded_tokenizer, variant):
    _, log = run_training(tmp_path, tiny_model_dir, embedded_tokenizer, loss=variant)
    if variant == "sppo_hard":
        assert log.target_winner.tolist() == pytest.approx([5.0] * len(log))


@pytest.mark.parametrize(
    ("loss", "parameter"), [("dpo", {"dpo_beta": 0.5}), ("ipo", {"ipo_tau": 0.25})]
)
def test_baselines_widen_the_margin_and_log_their_implicit_reward(
    tmp_path, tiny_model_dir, embedded_tokenizer, loss, parameter
):
    out, log = run_training(
        tmp_path, tiny_model_dir, embedded_tokenizer, loss=loss, epochs=4, **parameter
    )
    scale = parameter.get("dpo_beta", parameter.get("ipo_tau"))
    margin = log.logratio_winner - log.logratio_loser
    # step 1 starts at the reference: no margin, and so no pair ranked right yet
    assert log.reward_margin.iloc[0] == pytest.approx(0.0, abs=1e-4)
    # the implicit reward margin is the loss's scale times the log-ratio margin h
    assert log.reward_margin.to_numpy() == pytest.approx(scale * margin.to_numpy(), abs=1e-5)
    assert margin.iloc[-4:].mean() > 0.5
    assert log.reward_accuracy.iloc[-4:].mean() > 0.5
    assert log.loss.iloc[-4:].mean() < log.loss.iloc[:3].mean()
    assert log.target_winner.isna().all() and log.target_loser.isna().all()
    if loss == "ipo":
        assert log.target_margin.tolist() == pytest.approx([2.0] * len(log))  # 1/(2 x 0.25)
    else:
        assert log.target_margin.isna().all()
    recorded = json.loads((out / "sppo_training.json").read_text())
    assert recorded["objective"] == f"{loss}, {'beta' if loss == 'dpo' else 'tau'} {scale:g}"
    assert recorded["eta"] is None


def test_inpo_reads_the_base_model_and_pulls_each_margin_to_its_own_target(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    """A later round of INPO: the policy pi_t (another seed's weights) is not the base model,
    so each pair's target margin 1/(2 eta) - (tau/eta)(d_w - d_l) is its own; training moves
    the margins towards them, and the base model's pass is kept, not repeated on a resume."""
    from tiny_model import build_tiny_llama

    policy_dir = build_tiny_llama(tmp_path / "pi_t", embedded_tokenizer, seed=1)
    samples, pairs, responses = round_tables(embedded_tokenizer)
    s = settings(loss="inpo", inpo_eta=0.5, inpo_tau=0.25, epochs=4)
    model, tokenizer = load_policy(policy_dir)
    examples = build_examples(tokenizer, samples, pairs, responses, s)
    state, out, log_path = tmp_path / "state", tmp_path / "model", tmp_path / "train_log.csv"
    prepare_state_dir(state, "run-1")
    train(model, tokenizer, examples, s, state, out, log_path, models=(policy_dir, tiny_model_dir))
    log = pd.read_csv(log_path)
    targets = log.target_margin.to_numpy()
    assert targets.std() > 0.01 and not (targets == 1.0).all()  # 1/(2 eta) only where d_w = d_l
    gap = (log.logratio_winner - log.logratio_loser - log.target_margin).abs()
    assert gap.iloc[-4:].mean() < gap.iloc[:4].mean()
    assert log.reward_margin.to_numpy() == pytest.approx(
        0.5 * (log.logratio_winner - log.logratio_loser).to_numpy(), abs=1e-5
    )  # implicit reward eta l_y
    recorded = json.loads((out / "sppo_training.json").read_text())
    assert recorded["objective"] == "inpo, eta 0.5, tau 0.25" and recorded["eta"] is None


def test_inpo_without_the_base_model_is_an_error(tmp_path, tiny_model_dir, embedded_tokenizer):
    from sppoflow.train.data import RoundTables
    from sppoflow.train.round import train_round

    with pytest.raises(UserError, match=r"train.loss=inpo needs the base model \(--base-model\)"):
        train_round(
            settings(loss="inpo", inpo_eta=0.5, inpo_tau=0.1), tiny_model_dir,
            RoundTables(tmp_path / "s", tmp_path / "p", tmp_path / "w"),
            tmp_path / "out", tmp_path / "log.csv", tmp_path / "state",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": "dpo"}, "train.loss=dpo needs train.dpo_beta > 0"),
        ({"loss": "ipo"}, "train.loss=ipo needs train.ipo_tau > 0"),
        (
            {"loss": "dpo", "dpo_beta": 0.1, "train_on": "all"},
            "train.loss=dpo cannot train on it; set train.loss=sppo",
        ),
    ],
)
def test_baseline_settings_are_checked(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(**overrides).check()


def test_general_objective_trains(tmp_path, tiny_model_dir, embedded_tokenizer):
    _, log = run_training(tmp_path, tiny_model_dir, embedded_tokenizer, train_on="all")
    assert log.step.tolist() == [1, 2, 3]


def test_no_pairs_is_a_clear_error(embedded_tokenizer):
    samples, pairs, responses = round_tables(embedded_tokenizer)
    with pytest.raises(UserError, match="no training pairs"):
        build_examples(embedded_tokenizer, samples, pairs.iloc[0:0], responses, settings())


def test_gradient_accumulation_matches_the_same_global_batch(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    """Two micro-batches of 1 with accumulation make the same update as one batch of 2."""
    one, _ = run_training(tmp_path / "a", tiny_model_dir, embedded_tokenizer, batch_size=2)
    two, _ = run_training(
        tmp_path / "b",
        tiny_model_dir,
        embedded_tokenizer,
        batch_size=1,
        gradient_accumulation_steps=2,
    )
    a, b = load_policy(one)[0].state_dict(), load_policy(two)[0].state_dict()
    start = load_policy(tiny_model_dir)[0].state_dict()
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    assert moved > 1e-4
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3 * moved


def test_gradient_checkpointing_gives_the_same_losses(tmp_path, tiny_model_dir, embedded_tokenizer):
    _, plain = run_training(tmp_path / "a", tiny_model_dir, embedded_tokenizer)
    _, checkpointed = run_training(
        tmp_path / "b", tiny_model_dir, embedded_tokenizer, gradient_checkpointing=True
    )
    assert checkpointed.loss.tolist() == pytest.approx(plain.loss.tolist(), rel=1e-4)


def test_lora_trains_adapters_only_and_saves_a_plain_merged_model(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    out, log = run_training(
        tmp_path,
        tiny_model_dir,
        embedded_tokenizer,
        epochs=4,
        learning_rate=1e-2,
        lora=True,
        lora_r=4,
        lora_alpha=8.0,
        lora_target_modules=["q_proj", "v_proj"],
    )
    assert log.logratio_winner.iloc[0] == pytest.approx(0.0, abs=1e-4)  # B = 0 at the start
    assert log.loss.iloc[-4:].mean() < log.loss.iloc[:3].mean()
    assert not list(out.glob("adapter_*"))  # merged: the next round loads a plain model
    trained, _ = load_policy(out)
    start, _ = load_policy(tiny_model_dir)
    after, before = trained.state_dict(), start.state_dict()
    assert after.keys() == before.keys()
    changed = {name for name in before if not torch.equal(after[name], before[name])}
    assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in changed)


def test_lora_adapters_are_added_without_a_deprecation_warning_reaching_the_user(
    tiny_model_dir,
):
    """peft asks the model for ``is_gradient_checkpointing``, which transformers deprecated
    (peft's call, filtered): no FutureWarning or DeprecationWarning reaches the user."""
    import warnings

    from sppoflow.train.lora import add_lora_adapters

    model, _ = load_policy(tiny_model_dir)
    for checkpointing in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            add_lora_adapters(model, settings(lora=True, gradient_checkpointing=checkpointing,
                                              lora_target_modules=["q_proj"]))  # fmt: skip
        model, _ = load_policy(tiny_model_dir)


def test_lora_names_unknown_layers(tmp_path, tiny_model_dir, embedded_tokenizer):
    with pytest.raises(UserError, match=r"target_modules \['query'\] are not layers"):
        run_training(
            tmp_path, tiny_model_dir, embedded_tokenizer, lora=True, lora_target_modules=["query"]
        )


def test_global_batch_size_sets_the_accumulation_steps():
    assert settings(batch_size=2, global_batch_size=8).accumulation_steps(2) == 2
    assert settings(batch_size=2, gradient_accumulation_steps=3).accumulation_steps(4) == 3
    with pytest.raises(UserError, match=r"global_batch_size=6 is not a multiple of .* 4 x 1"):
        settings(batch_size=4, global_batch_size=6).accumulation_steps(1)


def test_the_trained_model_is_saved_in_save_dtype(tmp_path, tiny_model_dir, embedded_tokenizer):
    full, _ = run_training(tmp_path / "fp32", tiny_model_dir, embedded_tokenizer)
    half, _ = run_training(
        tmp_path / "bf16", tiny_model_dir, embedded_tokenizer, save_dtype="bfloat16"
    )
    kept, rounded = weights(full), weights(half)
    assert {t.dtype for t in kept.values()} == {torch.float32}  # the default keeps every bit
    assert all(torch.equal(rounded[k], kept[k].to(torch.bfloat16)) for k in kept)
    assert json.loads((half / "sppo_training.json").read_text())["save_dtype"] == "bfloat16"
    assert json.loads((half / "config.json").read_text())["dtype"] == "bfloat16"


def test_save_dtype_auto_keeps_the_starting_models_precision(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    from sppoflow.models.loading import cast_saved_weights, folder_dtype

    start = tmp_path / "start"
    shutil.copytree(tiny_model_dir, start)
    cast_saved_weights(start, torch.bfloat16)
    out, _ = run_training(tmp_path / "run", start, embedded_tokenizer, save_dtype="auto")
    assert folder_dtype(out) == torch.bfloat16


def test_deepspeed_mixed_precision_cannot_keep_fp32_weights(
    tmp_path, tiny_model_dir, embedded_tokenizer, monkeypatch
):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # as accelerate launch sets it
    with pytest.raises(UserError, match="save_dtype=float32 cannot be kept under DeepSpeed"):
        run_training(tmp_path, tiny_model_dir, embedded_tokenizer, precision="bf16")
