rule summary:
    input:
        metrics=round_files("results/iter{it}/eval/metrics.json"),
        stats=round_files("results/iter{it}/aggregate_stats.parquet"),
        logs=round_files("results/iter{it}/train_log.csv"),
        judgements=round_files("results/iter{it}/eval/judgements.parquet"),
    output:
        metrics="results/summary/metrics.tsv",
        judge_rewards="results/summary/judge_rewards.tsv",
    log:
        "results/summary/logs/summary.log",
    benchmark:
        "results/summary/benchmarks/summary.tsv"
    params:
        script=script("summary"),
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python {params.script} --metrics {input.metrics} --stats {input.stats}"
        " --logs {input.logs} --judgements {input.judgements} --out {output.metrics}"
        " --judge-rewards {output.judge_rewards} > {log} 2>&1"
