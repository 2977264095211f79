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
        script=script("score"),
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=gpu_runtime,
    shell:
        "python {params.script} --samples {input} --out {output} {params.args}"
        " --threads {threads} > {log} 2>&1"
