# The base model's evaluation responses (round 0) are generated once and reused by every
# round, as are each round's responses when the next round compares against them. With config
# shards > 1, eval_generate is sharded like sample.


use rule sample as eval_generate with:
    input:
        model="results/{chain}iter{it}/model",
        prompts="results/prompts/eval.parquet",
    output:
        stage_output("results/{chain}iter{it}/eval/responses.parquet", "eval_responses"),
    log:
        FILES.job_file("results/{chain}iter{it}/logs/eval_generate.log"),
    benchmark:
        FILES.job_file("results/{chain}iter{it}/timings/eval_generate.tsv")
    conda:
        generation_env("evaluate")
    resources:
        **gpu_job("evaluate"),
    params:
        args=ARGS.eval_generate,


if SHARDS > 1:

    # localrule is not inherited by a use rule
    use rule gather_samples as gather_eval_responses with:
        input:
            expected="results/prompts/eval.parquet",
            shards=shard_files("eval_responses"),
        output:
            "results/{chain}iter{it}/eval/responses.parquet",
        log:
            "results/{chain}iter{it}/logs/gather_eval_responses.log",
        benchmark:
            "results/{chain}iter{it}/timings/gather_eval_responses.tsv"
        localrule: True
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            table="samples --k 1",


rule evaluate:
    input:
        responses="results/{chain}iter{it}/eval/responses.parquet",
        base="results/iter0/eval/responses.parquet",
        previous=FILES.previous_eval_responses,
        judges=ARGS.evaluation_judge_records(),
    output:
        judgements="results/{chain}iter{it}/eval/judgements.parquet",
        metrics="results/{chain}iter{it}/eval/metrics.json",
    log:
        "results/{chain}iter{it}/logs/evaluate.log",
    benchmark:
        "results/{chain}iter{it}/timings/evaluate.tsv"
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        **gpu_job("evaluate"),
    params:
        cpu_threads=ARGS.cpu_threads,
        args=ARGS.evaluate_judges,
        judged_by=ARGS.judged_by,
        method=ARGS.method_name,
        script=script("evaluate"),
    shell:
        on_gpus(
            "python {params.script:q} --round {wildcards.it} --method {params.method}"
            " --responses {input.responses:q} --base {input.base:q} --previous {input.previous:q}"
            " --judgements {output.judgements:q} --metrics {output.metrics:q} {params.args}"
        )


# Methods side by side: the final rounds of every two methods, judged against each other by
# every evaluation judge.
if SIDE_BY_SIDE:

    rule head_to_head:
        input:
            responses=FILES.method_files(
                "results/{chain}iter{it}/eval/responses.parquet", [ROUNDS[-1]]
            ),
            judges=ARGS.evaluation_judge_records(),
        output:
            judgements="results/methods/head_to_head/judgements.parquet",
            metrics="results/methods/head_to_head/metrics.json",
        log:
            "results/methods/head_to_head/logs/head_to_head.log",
        benchmark:
            "results/methods/head_to_head/timings/head_to_head.tsv"
        conda:
            "../../envs/torch.yaml"
        threads: 8
        resources:
            **gpu_job("evaluate"),
        params:
            cpu_threads=ARGS.cpu_threads,
            args=ARGS.evaluate_judges,
            judged_by=ARGS.judged_by,
            methods=ARGS.method_names(),
            round=ROUNDS[-1],
            script=script("head_to_head"),
        shell:
            on_gpus(
                "python {params.script:q} --methods {params.methods} --responses {input.responses:q}"
                " --round {params.round} --judgements {output.judgements:q}"
                " --metrics {output.metrics:q} {params.args}"
            )
