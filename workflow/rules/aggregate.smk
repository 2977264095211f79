rule aggregate:
    input:
        samples="results/iter{it}/samples.parquet",
        preferences="results/iter{it}/preferences.parquet",
    output:
        responses="results/iter{it}/responses.parquet",
        pairs="results/iter{it}/pairs.parquet",
        stats="results/iter{it}/aggregate_stats.parquet",
    log:
        "results/iter{it}/logs/aggregate.log",
    benchmark:
        "results/iter{it}/benchmarks/aggregate.tsv"
    params:
        args=aggregate_args,
        script=script("aggregate"),
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python {params.script} --samples {input.samples} --preferences {input.preferences}"
        " {params.args} --responses {output.responses} --pairs {output.pairs}"
        " --stats {output.stats} > {log} 2>&1"
