# Figures, tables and exports for `snakemake --report results/report.html`: each output marked
# report(...) with a caption (workflow/report/*.rst), a category and, per round, labels.


rule round_figures:
    input:
        log="results/{chain}iter{it}/train_log.csv",
        pairs=FILES.sampled("pairs.parquet"),
        stats=FILES.sampled("aggregate_stats.parquet"),
    output:
        training=report(
            "results/{chain}iter{it}/report/training.png",
            caption="../report/training.rst",
            category="2. Training",
            subcategory=FILES.method_label,
            labels={"figure": "training curves"},
        ),
        estimates=report(
            "results/{chain}iter{it}/report/win_rate_estimates.png",
            caption="../report/win_rate_estimates.rst",
            category="2. Training",
            subcategory=FILES.method_label,
            labels={"figure": "estimated win rates p_w, p_l"},
        ),
    log:
        "results/{chain}iter{it}/logs/round_figures.log",
    benchmark:
        "results/{chain}iter{it}/timings/round_figures.tsv"
    wildcard_constraints:
        it=r"[1-9]\d*",
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        title=FILES.method_label,
        script=script("report"),
    shell:
        "python {params.script:q} round --round {wildcards.it} --title {params.title:q}"
        " --train-log {input.log:q}"
        " --pairs {input.pairs:q} --stats {input.stats:q} --training {output.training:q}"
        " --estimates {output.estimates:q} > {log:q} 2>&1"


rule report_figures:
    input:
        metrics=FILES.method_files("results/{chain}iter{it}/eval/metrics.json"),
        judgements=FILES.method_files("results/{chain}iter{it}/eval/judgements.parquet"),
        responses=[
            "results/iter0/eval/responses.parquet",
            *FILES.method_files("results/{chain}iter{it}/eval/responses.parquet"),
        ],
        models=FILES.method_files("results/{chain}iter{it}/model"),
        head_to_head=FILES.head_to_head_metrics(),
    output:
        **head_to_head_report(),
        win_rates=report(
            "results/report/win_rates.png",
            caption="../report/win_rates.rst",
            category="1. Did it work",
            labels={"figure": "win rate per round"},
        ),
        win_rates_table=report(
            "results/report/win_rates.html",
            caption="../report/win_rates_table.rst",
            category="1. Did it work",
            labels={"figure": "win rate table"},
        ),
        length=report(
            "results/report/length.png",
            caption="../report/length.rst",
            category="1. Did it work",
            labels={"figure": "length and length-controlled win rate"},
        ),
        judge=report(
            "results/report/judge_rewards.png",
            caption="../report/judge_rewards.rst",
            category="3. What the judge rewards",
            labels={"figure": "judge against length, repetition, order"},
        ),
        examples=report(
            "results/report/examples.html",
            caption="../report/examples.rst",
            category="4. Examples",
            labels={"figure": "example responses"},
        ),
        config=report(
            "results/report/config.html",
            caption="../report/config.rst",
            category="5. Run",
            labels={"figure": "config and versions"},
        ),
    log:
        "results/report/logs/report_figures.log",
    benchmark:
        "results/report/timings/report_figures.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("report"),
        config=ARGS.report_config,
        head_to_head=FILES.head_to_head_flag,
    shell:
        "python {params.script:q} summary --metrics {input.metrics:q}"
        " --judgements {input.judgements:q} --responses {input.responses:q} --models {input.models:q}"
        " --config-json {params.config} {params.head_to_head} --out-dir results/report"
        " > {log:q} 2>&1"


# The stages' rates, read from the jobs' logs and timing files once every rate-logging job
# (sample, score, train, eval_generate) is done; a timing record, so under timings/.
rule throughput_table:
    input:
        FILES.method_files("results/{chain}iter{it}/model"),
        "results/iter0/eval/responses.parquet",
        FILES.method_files("results/{chain}iter{it}/eval/responses.parquet"),
    output:
        report(
            "results/timings/throughput.html",
            caption="../report/throughput.rst",
            category="5. Run",
            labels={"figure": "throughput per stage"},
        ),
    log:
        "results/report/logs/throughput_table.log",
    benchmark:
        "results/report/timings/throughput_table.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("report"),
    shell:
        "python {params.script:q} throughput --run results --out {output:q} > {log:q} 2>&1"


rule export_alpaca_eval:
    input:
        "results/{chain}iter{it}/eval/responses.parquet",
    output:
        "results/export/{chain}alpaca_eval_iter{it}.json",
    log:
        "results/export/logs/{chain}alpaca_eval_iter{it}.log",
    benchmark:
        "results/export/timings/{chain}alpaca_eval_iter{it}.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("export"),
        generator=ARGS.round_model,
    shell:
        "python {params.script:q} alpaca --responses {input:q} --generator {params.generator}"
        " --out {output:q} > {log:q} 2>&1"


rule duckdb_views:
    input:
        FILES.method_files("results/{chain}iter{it}/eval/judgements.parquet"),
        FILES.method_files("results/{chain}iter{it}/train_log.csv"),
        FILES.head_to_head_metrics(),
    output:
        "results/sppo.duckdb",
    log:
        "results/export/logs/duckdb.log",
    benchmark:
        "results/export/timings/duckdb.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("export"),
        methods=ARGS.method_names(),
    shell:
        "python {params.script:q} duckdb --out {output:q} --methods {params.methods} > {log:q} 2>&1"
