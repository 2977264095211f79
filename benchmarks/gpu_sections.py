"""The GPU check's measurements (benchmarks/gpu_check.py runs them): its sizes, and one
function per section that builds its models from configs with random weights, measures, and
writes its lines to the check's report (anything with a ``line(text)`` method)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parents[1]
SITE_VARIABLE = "SPPO_GPU_CHECK_SITE"  # set once the kit is installed: no second install


class Report(Protocol):
    def line(self, text: str = "") -> None: ...


@dataclass(frozen=True)
class Size:
    pairrm_dims: str  # a dims table of tests/pairrm_helpers.py
    pairrm_prompts: int
    pairrm_k: int
    train_shape: dict
    train_batch: int
    train_length: int
    train_steps: int
    sample_shape: dict | None  # None: the tiny test Llama
    sample_prompts: int
    sample_k: int
    sample_tokens: int
    sample_batches: tuple[int, ...]


LLAMA_1B = dict(
    hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
    num_key_value_heads=4, vocab_size=256000,
)  # fmt: skip
SMOLLM2_135M = dict(
    hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0,
)  # fmt: skip
SIZES = {
    "full": Size(
        pairrm_dims="LARGE", pairrm_prompts=16, pairrm_k=5,
        train_shape=LLAMA_1B, train_batch=8, train_length=1024, train_steps=5,
        sample_shape=SMOLLM2_135M, sample_prompts=128, sample_k=4, sample_tokens=256,
        sample_batches=(64, 512),
    ),
    "tiny": Size(
        pairrm_dims="TINY", pairrm_prompts=2, pairrm_k=3,
        train_shape=dict(LLAMA_1B, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=32000),
        train_batch=2, train_length=128, train_steps=2,
        sample_shape=None, sample_prompts=4, sample_k=2, sample_tokens=8, sample_batches=(2, 8),
    ),
}  # fmt: skip


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pairrm(report: Report, size: Size, device) -> None:
    import numpy as np
    import torch

    import pairrm_helpers
    from pairrm_throughput import timed, workload
    from sppoflow.score.judges.pairrm import PairRMJudge

    dims = getattr(pairrm_helpers, size.pairrm_dims)
    model, tokenizer = pairrm_helpers.random_pairrm(dims, seed=0, std=None)
    prompts, responses = workload(size.pairrm_prompts, size.pairrm_k, seed=0)
    n_pairs = size.pairrm_prompts * size.pairrm_k * (size.pairrm_k - 1)
    report.line(
        f"DeBERTa-v3 {size.pairrm_dims.lower()} shape {dims}, random weights; {n_pairs} ordered "
        f"pairs ({size.pairrm_prompts} prompts x K={size.pairrm_k}; prompts 50-300, "
        "responses 100-400 tokens)"
    )
    results = {}
    for name, batch_size, max_tokens in (
        ("one pair per pass", 1, 1 << 30),
        ("batched, <= 16384 tokens", 32, 16384),
    ):
        judge = PairRMJudge(
            model, tokenizer, batch_size=batch_size, max_batch_tokens=max_tokens,
            device=device, dtype=torch.bfloat16,
        )  # fmt: skip
        seconds, matrices = timed(judge, prompts, responses)
        results[name] = seconds, matrices
        report.line(f"  {name:26s} bf16 {seconds:8.2f} s {n_pairs / seconds:9.1f} pairs/s")
    (one, one_matrices), (batched, batched_matrices) = results.values()
    difference = max(
        np.abs(1 / (1 + np.exp(-a)) - 1 / (1 + np.exp(-b))).max()
        for a, b in zip(one_matrices, batched_matrices, strict=True)
    )
    verdict = "met" if one / batched >= 10 else "NOT met"
    report.line(
        f"  batched / one pair per pass: x{one / batched:.1f} (target >= 10x: {verdict}); "
        f"max |P_batched - P_one| = {difference:.1e} (bf16)"
    )


def training_step(report: Report, size: Size, device) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sppoflow.models.logprobs import response_logps, sequence_logps
    from sppoflow.runtime.flops import TRAINING_PASSES, forward_flops_per_token, linear_shapes
    from sppoflow.runtime.peak import device_peak

    torch.manual_seed(0)
    config = LlamaConfig(**size.train_shape, tie_word_embeddings=True)
    with device:  # built where it trains: no 5 GB copy from the host
        model = LlamaForCausalLM(config).train()
    parameters = sum(p.numel() for p in model.parameters())
    batch, length = size.train_batch, size.train_length
    ids = torch.randint(0, config.vocab_size, (batch, length), device=device)
    attention = torch.ones_like(ids)
    response = torch.zeros_like(ids)
    response[:, length // 2 :] = 1
    report.line(
        f"Llama of {parameters / 1e6:,.0f}M parameters (hidden {config.hidden_size}, "
        f"{config.num_hidden_layers} layers, vocabulary {config.vocab_size}, tied), "
        f"{batch} x {length} tokens (response: the second half), bf16 autocast over fp32 "
        f"weights, RMSprop; {size.train_steps} timed steps after one warm-up"
    )

    def log_probs(variant: str):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            if variant == "chunked response_logps":
                return response_logps(model, ids, attention, response)
            logits = model(input_ids=ids, attention_mask=attention).logits
            return sequence_logps(logits, ids, response)

    rates = {}
    for variant in ("full log-softmax", "chunked response_logps"):
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-7)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        for step in range(size.train_steps + 1):
            if step == 1:  # after the warm-up
                synchronize(device)
                start = time.perf_counter()
            loss = -log_probs(variant).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        seconds = (time.perf_counter() - start) / size.train_steps
        rates[variant] = batch * length / seconds
        shapes = linear_shapes(model)
        limit = device_peak(device, torch.bfloat16, shapes)
        flops = TRAINING_PASSES * forward_flops_per_token(shapes) * batch * length
        shown = f"MFU {flops / seconds / limit.flops:.1%}" if limit else "MFU unknown here"
        if device.type == "cuda":
            peak = f"peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
        else:
            peak = "peak memory: CUDA only (benchmarks/logprob_memory.py measures it on CPUs)"
        report.line(
            f"  {variant:24s} {seconds:7.3f} s/step {rates[variant]:10.0f} tokens/s  {shown}  "
            f"{peak}"
        )
        del optimizer
    ratio = rates["chunked response_logps"] / rates["full log-softmax"]
    report.line(f"  chunked / full tokens/s: x{ratio:.2f}")


def policy_folder(folder: Path, shape: dict | None, tokenizer) -> Path:
    """A random policy saved with ``tokenizer``: the tiny test Llama, or ``shape``."""
    import torch
    from transformers import LlamaForCausalLM

    from tiny_model import build_tiny_llama, tiny_llama_config

    if shape is None:
        return build_tiny_llama(folder, tokenizer)
    torch.manual_seed(0)
    config = tiny_llama_config(
        tokenizer, **shape, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sampling(report: Report, size: Size, device, tokenizer, scratch: Path) -> None:
    import importlib.util

    import pandas as pd

    from sppoflow.models.loading import load_policy
    from sppoflow.prompts.pool import read_source
    from sppoflow.runtime.devices import resolve_dtype
    from sppoflow.sample.settings import SamplingSettings
    from sppoflow.sample.transformers_backend import generate

    folder = policy_folder(scratch / "policy", size.sample_shape, tokenizer)
    dtype = resolve_dtype("auto", device)
    model, tokenizer = load_policy(folder, dtype=dtype, device=device)
    parameters = sum(p.numel() for p in model.parameters())
    texts = read_source(str(ROOT / "config" / "prompts" / "instructions.jsonl"), "prompt")
    prompts = pd.DataFrame(
        {"prompt_id": [f"g{n}" for n in range(size.sample_prompts)],
         "prompt": texts[: size.sample_prompts]}
    )  # fmt: skip
    report.line(
        f"random {parameters / 1e6:.0f}M-parameter Llama ({model.config.num_hidden_layers} "
        f"layers, hidden {model.config.hidden_size}), {str(dtype).removeprefix('torch.')}; "
        f"{size.sample_prompts} prompts x K={size.sample_k}, <= {size.sample_tokens} new tokens, "
        "temperature 0.7, top-p 0.9 (random weights rarely stop early)"
    )
    for batch_size in size.sample_batches:
        settings = SamplingSettings(
            k=size.sample_k, max_new_tokens=size.sample_tokens, batch_size=batch_size,
            seed=0, device=str(device),
        )  # fmt: skip
        synchronize(device)
        start = time.perf_counter()
        samples = generate(model, tokenizer, prompts, settings)
        synchronize(device)
        seconds = time.perf_counter() - start
        tokens = int(samples.response_tokens.sum())
        report.line(
            f"  transformers, batch {batch_size:4d}: {tokens} tokens in {seconds:6.1f} s, "
            f"{tokens / seconds:9.0f} generated tokens/s"
        )
    if importlib.util.find_spec("vllm") is None:
        report.line("  vllm: not installed here (envs/vllm.yaml; too large for the kit)")


def workflow_round(report: Report, device, tokenizer, scratch: Path) -> None:
    import yaml

    import pairrm_helpers
    from sppoflow.score.judges.pairrm import save_pairrm
    from stages import per_stage, read_timings

    folder = scratch / "workflow"
    shutil.copytree(ROOT / ".test" / "data", folder / "data")
    (folder / "resources").mkdir()
    policy_folder(folder / "resources" / "tiny-llama", None, tokenizer)
    judge, judge_tokenizer = pairrm_helpers.random_pairrm(pairrm_helpers.TINY)
    save_pairrm(judge, judge_tokenizer, folder / "resources" / "pairrm", layout="hf")
    config = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
    config["rounds"] = 1
    config["judge"] = {"backend": "pairrm", "model": "resources/pairrm", "prompts_per_chunk": 2}
    for stage in ("sample", "judge", "train", "evaluate"):
        config[stage]["device"] = device.type
    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    # The workflow's jobs run `python`: this interpreter (a venv's too), whatever the machine
    # calls it.
    shims = scratch / "bin"
    shims.mkdir()
    (shims / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shims / "python").chmod(0o755)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PATH"] = os.pathsep.join([str(shims), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.environ.get(SITE_VARIABLE), str(ROOT / "src"), env.get("PYTHONPATH")) if p
    )
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile")]
    command += ["--directory", str(folder), "--cores", "all"]
    command += ["--configfile", str(folder / "config" / "config.yaml")]
    report.line(
        f"the .test config, 1 round (6 prompts x K=3, 12 new tokens), judge: random tiny "
        f"PairRM; every stage on {device.type}"
    )
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"snakemake exited {done.returncode}:\n{done.stderr[-3000:]}")
    jobs = read_timings(folder / "results")
    report.line(f"  {len(jobs)} jobs, {wall:.0f} s wall; per stage:")
    for text in per_stage(jobs).round(2).to_string().splitlines():
        report.line(f"    {text}")
