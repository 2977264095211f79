# Prompt pools are built on the submit host (local rules): a dataset id is downloaded there,
# once, and the cluster jobs read the pool's parquet files.


rule prompt_pool:
    input:
        FILES.local_prompt_files,
    output:
        pool="results/prompts/pool.parquet",
        eval="results/prompts/eval.parquet",
    log:
        "results/prompts/logs/prompt_pool.log",
    benchmark:
        "results/prompts/timings/prompt_pool.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        args=ARGS.pool,
        script=script("prompts"),
        hub=HUB_ACCESS,
    shell:
        "{params.hub} python {params.script:q} pool {params.args} --pool {output.pool:q} --eval {output.eval:q}"
        " > {log:q} 2>&1"


rule round_prompts:
    input:
        "results/prompts/pool.parquet",
    output:
        "results/prompts/train_iter{it}.parquet",
    log:
        "results/prompts/logs/round_prompts_iter{it}.log",
    benchmark:
        "results/prompts/timings/round_prompts_iter{it}.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        args=ARGS.round_prompts,
        script=script("prompts"),
    shell:
        "python {params.script:q} round --pool {input:q} {params.args} --out {output:q} > {log:q} 2>&1"
