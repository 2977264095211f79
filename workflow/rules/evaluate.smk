# The base model's evaluation responses (round 0) are generated once and reused by every
# round, as are each round's responses when the next round compares against them. With config
# shards > 1, eval_generate is sharded like sample.


rule eval_generate:
    input:
        model="results/{chain}iter{it}/model",
        prompts="results/prompts/eval.parquet",
    output:
        stage_output("results/{chain}iter{it}/eval/responses.parquet", "eval_responses"),
    log:
        job_file("results/{chain}iter{it}/logs/eval_generate.log"),
    benchmark:
        job_file("results/{chain}iter{it}/benchmarks/eval_generate.tsv")
    conda:
        generation_env("evaluate")
    threads: 8
    resources:
        **placement("evaluate"),
        gpu=gpus("evaluate"),
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
    params:
        cpu_threads=CPU_THREADS,
        args=eval_generate_args,
        shard=shard_flags,
        with_gpus=script("with_gpus"),
        python=generation_python,
        script=script("sample"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} -- {params.python} {params.script}"
        " --model {input.model} --prompts {input.prompts} --out {output} {params.args}"
        " {params.shard} --tensor-parallel-size {resources.gpu}"
        " --threads {threads} {params.cpu_threads} > {log} 2>&1"


if SHARDS > 1:

    rule gather_eval_responses:
        input:
            prompts="results/prompts/eval.parquet",
            shards=shard_files("eval_responses"),
        output:
            "results/{chain}iter{it}/eval/responses.parquet",
        log:
            "results/{chain}iter{it}/logs/gather_eval_responses.log",
        benchmark:
            "results/{chain}iter{it}/benchmarks/gather_eval_responses.tsv"
        localrule: True
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            script=script("gather"),
        shell:
            "python {params.script} samples {input.shards} --prompts {input.prompts}"
            " --k 1 --out {output} > {log} 2>&1"


rule evaluate:
    input:
        responses="results/{chain}iter{it}/eval/responses.parquet",
        base="results/iter0/eval/responses.parquet",
        previous=previous_eval_responses,
        judges=evaluation_judge_records(),
    output:
        judgements="results/{chain}iter{it}/eval/judgements.parquet",
        metrics="results/{chain}iter{it}/eval/metrics.json",
    log:
        "results/{chain}iter{it}/logs/evaluate.log",
    benchmark:
        "results/{chain}iter{it}/benchmarks/evaluate.tsv"
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        **placement("evaluate"),
        gpu=gpus("evaluate"),
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
    params:
        cpu_threads=CPU_THREADS,
        args=evaluate_judge_args,
        judged_by=judged_by,
        method=method_name,
        with_gpus=script("with_gpus"),
        script=script("evaluate"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} -- python {params.script}"
        " --round {wildcards.it} --method {params.method} --responses {input.responses}"
        " --base {input.base} --previous {input.previous} --judgements {output.judgements}"
        " --metrics {output.metrics} {params.args}"
        " --threads {threads} {params.cpu_threads} > {log} 2>&1"


# Methods side by side: the final rounds of every two methods, judged against each other by
# every evaluation judge.
if SIDE_BY_SIDE:

    rule head_to_head:
        input:
            responses=method_files(
                "results/{chain}iter{it}/eval/responses.parquet", [ROUNDS[-1]]
            ),
            judges=evaluation_judge_records(),
        output:
            judgements="results/methods/head_to_head/judgements.parquet",
            metrics="results/methods/head_to_head/metrics.json",
        log:
            "results/methods/head_to_head/logs/head_to_head.log",
        benchmark:
            "results/methods/head_to_head/benchmarks/head_to_head.tsv"
        conda:
            "../../envs/torch.yaml"
        threads: 8
        resources:
            **placement("evaluate"),
            gpu=gpus("evaluate"),
            mem_mb=mem_mb("evaluate"),
            runtime=runtime("evaluate"),
        params:
            cpu_threads=CPU_THREADS,
            args=evaluate_judge_args,
            judged_by=judged_by,
            methods=" ".join(m.name for m in METHODS),
            round=ROUNDS[-1],
            with_gpus=script("with_gpus"),
            script=script("head_to_head"),
        shell:
            "exec python {params.with_gpus} {resources.gpu} -- python {params.script}"
            " --methods {params.methods} --responses {input.responses} --round {params.round}"
            " --judgements {output.judgements} --metrics {output.metrics} {params.args}"
            " --threads {threads} {params.cpu_threads} > {log} 2>&1"
