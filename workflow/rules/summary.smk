# One row per round of each method (the method column names it), in the order of the methods.


rule summary:
    input:
        metrics=method_files("results/{chain}iter{it}/eval/metrics.json"),
        stats=method_stats(),
        logs=method_files("results/{chain}iter{it}/train_log.csv"),
        judgements=method_files("results/{chain}iter{it}/eval/judgements.parquet"),
    output:
        metrics="results/summary/metrics.tsv",
        judge_rewards="results/summary/judge_rewards.tsv",
    log:
        "results/summary/logs/summary.log",
    benchmark:
        "results/summary/benchmarks/summary.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("summary"),
    shell:
        "python {params.script} --metrics {input.metrics} --stats {input.stats}"
        " --logs {input.logs} --judgements {input.judgements} --out {output.metrics}"
        " --judge-rewards {output.judge_rewards} > {log} 2>&1"
