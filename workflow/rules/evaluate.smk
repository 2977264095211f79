# The base model's evaluation responses (round 0) are generated once and reused by every
# round, as are each round's responses when the next round compares against them.


rule eval_generate:
    input:
        model="results/iter{it}/model",
        prompts="results/prompts/eval.parquet",
    output:
        "results/iter{it}/eval/responses.parquet",
    log:
        "results/iter{it}/logs/eval_generate.log",
    benchmark:
        "results/iter{it}/benchmarks/eval_generate.tsv"
    params:
        args=eval_generate_args,
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
        "python {params.with_gpus} {resources.gpu} -- python {params.script} --model {input.model} --prompts {input.prompts} --out {output}"
        " {params.args} --tensor-parallel-size {resources.gpu} --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        responses="results/iter{it}/eval/responses.parquet",
        base="results/iter0/eval/responses.parquet",
        previous=previous_eval_responses,
    output:
        judgements="results/iter{it}/eval/judgements.parquet",
        metrics="results/iter{it}/eval/metrics.json",
    log:
        "results/iter{it}/logs/evaluate.log",
    benchmark:
        "results/iter{it}/benchmarks/evaluate.tsv"
    params:
        args=judge_args,
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
        "python {params.with_gpus} {resources.gpu} -- python {params.script} --round {wildcards.it} --responses {input.responses}"
        " --base {input.base} --previous {input.previous} --judgements {output.judgements}"
        " --metrics {output.metrics} {params.args} --threads {threads} > {log} 2>&1"
