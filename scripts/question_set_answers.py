#!/usr/bin/env python
"""question_set_answers stage: a round's model answers a question set's questions (transformers or
vLLM), every turn of every question.

Reads the question set's own question file (Arena-Hard: arena-hard-auto's question.jsonl;
MT-Bench: FastChat's, two turns a question) and writes a question-set answers table, a row per
question and turn; scripts/export.py writes it in the tool's own format. Turn 2 is generated
from the conversation [turn 1, the model's answer, turn 2] through the model's chat template.
--sampling conventional samples at each question set's own temperatures (MT-Bench: FastChat's
per-category table; Arena-Hard: greedy), at top-p 1; evaluate at --temperature and --top-p.

Example:
    python scripts/question_set_answers.py --question-set mt_bench --model results/iter2/model \\
        --questions mt_bench/question.jsonl --out /tmp/mt_bench_answers.parquet
"""

import time

import _bootstrap  # noqa: F401
from sppoflow.cli import add_settings, parser_for, run_stage, settings_from
from sppoflow.evaluate.question_set_answers import (
    AnswerSettings,
    answer_questions,
    context_length,
    conversation_budget,
)
from sppoflow.evaluate.question_sets import QUESTION_SETS, read_questions
from sppoflow.runtime.throughput import log_rate
from sppoflow.sample.settings import SamplingSettings
from sppoflow.tables import QUESTION_SET_ANSWERS, write_table


def turn_generator(args, settings: SamplingSettings, questions):
    """(a function answering one turn's prompts at given settings, what the rate counts)."""
    if settings.backend == "vllm":
        from sppoflow.sample.vllm_backend import VllmEngine, policy_tokenizer

        tokenizer = policy_tokenizer(args.model)
        budget = conversation_budget(
            tokenizer, questions, args.system_prompt, settings.max_new_tokens
        )
        limit = context_length(args.model)  # a short-context model: answers get what is left
        engine = VllmEngine(args.model, settings, min(budget, limit or budget), tokenizer)

        def with_vllm(prompts, asked):
            return engine.generate(prompts, asked, args.system_prompt)

        return with_vllm, "vLLM, its engine start not counted"
    # torch and transformers load here, so that --help and a bad argument answer at once
    from sppoflow.models.loading import load_policy
    from sppoflow.runtime.devices import resolve_device, resolve_dtype
    from sppoflow.sample.transformers_backend import generate

    device = resolve_device(settings.device)
    model, tokenizer = load_policy(args.model, resolve_dtype(settings.dtype, device))
    model.to(device).eval()

    def with_transformers(prompts, asked):
        return generate(model, tokenizer, prompts, asked, args.system_prompt)

    return with_transformers, f"transformers on {device}, the model's load not counted"


def main(args) -> None:
    settings = settings_from(SamplingSettings, args)
    sampling = settings_from(AnswerSettings, args).sampling
    _, questions = read_questions(args.questions, args.question_set)
    generate_turn, what = turn_generator(args, settings, questions)
    start = time.perf_counter()
    answers = answer_questions(args.question_set, questions, generate_turn, settings, sampling)
    tokens = int(answers["response_tokens"].sum())
    log_rate("generation", tokens, "generated tokens", time.perf_counter() - start, what)
    write_table(answers, args.out, QUESTION_SET_ANSWERS)


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--question-set", required=True, choices=QUESTION_SETS)
    parser.add_argument("--model", required=True, help="policy model folder")
    parser.add_argument("--questions", required=True, help="the question set's question file")
    parser.add_argument("--out", required=True, help="question-set answers parquet to write")
    parser.add_argument("--system-prompt", default=None, help="system message, if any")
    add_settings(parser, SamplingSettings)
    add_settings(parser, AnswerSettings)
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
