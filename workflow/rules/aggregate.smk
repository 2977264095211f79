rule aggregate:
    input:
        samples="results/{chain}iter{it}/samples.parquet",
        preferences="results/{chain}iter{it}/preferences.parquet",
    output:
        win_rates="results/{chain}iter{it}/response_win_rates.parquet",
        pairs="results/{chain}iter{it}/pairs.parquet",
        stats="results/{chain}iter{it}/aggregate_stats.parquet",
    log:
        "results/{chain}iter{it}/logs/aggregate.log",
    benchmark:
        "results/{chain}iter{it}/timings/aggregate.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        args=ARGS.aggregate,
        script=script("aggregate"),
    shell:
        "python {params.script:q} --samples {input.samples:q} --preferences {input.preferences:q}"
        " {params.args} --win-rates {output.win_rates:q} --pairs {output.pairs:q}"
        " --stats {output.stats:q} > {log:q} 2>&1"
