# The base model's evaluation responses (round 0) are generated once and reused by every
# round, as are each round's responses when the next round compares against them. With config
# shards > 1, eval_generate is sharded like sample.


rule eval_generate:
    input:
        model="results/iter{it}/model",
        prompts="results/prompts/eval.parquet",
    output:
        stage_output("results/iter{it}/eval/responses.parquet", "eval_responses"),
    log:
        job_file("results/iter{it}/logs/eval_generate.log"),
    benchmark:
        job_file("results/iter{it}/benchmarks/eval_generate.tsv")
    params:
        args=eval_generate_args,
        shard=shard_flags,
        with_gpus=script("with_gpus"),
        script=script("sample"),
    conda:
        generation_env()
    threads: 8
    resources:
        gpu=gpus("evaluate"),
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
        **placement("evaluate"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} -- python {params.script}"
        " --model {input.model} --prompts {input.prompts} --out {output} {params.args}"
        " {params.shard} --tensor-parallel-size {resources.gpu} --threads {threads} > {log} 2>&1"


if SHARDS > 1:

    rule gather_eval_responses:
        input:
            prompts="results/prompts/eval.parquet",
            shards=shard_files("eval_responses"),
        output:
            "results/iter{it}/eval/responses.parquet",
        log:
            "results/iter{it}/logs/gather_eval_responses.log",
        params:
            script=script("gather"),
        localrule: True
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "python {params.script} samples {input.shards} --prompts {input.prompts}"
            " --k 1 --out {output} > {log} 2>&1"


rule evaluate:
    input:
        responses="results/iter{it}/eval/responses.parquet",
        base="results/iter0/eval/responses.parquet",
        previous=previous_eval_responses,
        judge="results/hub/judge.json",
    output:
        judgements="results/iter{it}/eval/judgements.parquet",
        metrics="results/iter{it}/eval/metrics.json",
    log:
        "results/iter{it}/logs/evaluate.log",
    benchmark:
        "results/iter{it}/benchmarks/evaluate.tsv"
    params:
        args=evaluate_judge_args,
        with_gpus=script("with_gpus"),
        script=script("evaluate"),
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=gpus("evaluate"),
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
        **placement("evaluate"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} -- python {params.script}"
        " --round {wildcards.it} --responses {input.responses}"
        " --base {input.base} --previous {input.previous} --judgements {output.judgements}"
        " --metrics {output.metrics} {params.args} --threads {threads} > {log} 2>&1"
