rule score:
    input:
        "results/iter{it}/samples.parquet",
    output:
        "results/iter{it}/preferences.parquet",
    log:
        "results/iter{it}/logs/score.log",
    benchmark:
        "results/iter{it}/benchmarks/score.tsv"
    params:
        args=judge_args,
        with_gpus=script("with_gpus"),
        script=script("score"),
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=gpus("score"),
        mem_mb=mem_mb("score"),
        runtime=runtime("score"),
        **placement("score"),
    shell:
        "python {params.with_gpus} {resources.gpu} -- python {params.script} --samples {input} --out {output} {params.args}"
        " --threads {threads} > {log} 2>&1"
