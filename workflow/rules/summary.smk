# One row per round of each method (the method column names it), in the order of the methods.


rule summary:
    input:
        metrics=FILES.method_files("results/{chain}iter{it}/eval/metrics.json"),
        stats=FILES.method_stats(),
        logs=FILES.method_files("results/{chain}iter{it}/train_log.csv"),
        judgements=FILES.method_files("results/{chain}iter{it}/eval/judgements.parquet"),
    output:
        metrics="results/summary/metrics.tsv",
        judge_rewards="results/summary/judge_rewards.tsv",
    log:
        "results/summary/logs/summary.log",
    benchmark:
        "results/summary/timings/summary.tsv"
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
        "python {params.script:q} --metrics {input.metrics:q} --stats {input.stats:q}"
        " --logs {input.logs:q} --judgements {input.judgements:q} --out {output.metrics:q}"
        " --judge-rewards {output.judge_rewards:q} > {log:q} 2>&1"
