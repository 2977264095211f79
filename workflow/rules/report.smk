# Figures, tables and exports for `snakemake --report results/report.html`: each output marked
# report(...) with a caption (workflow/report/*.rst), a category and, per round, labels.


rule round_figures:
    input:
        log="results/iter{it}/train_log.csv",
        pairs="results/iter{it}/pairs.parquet",
        stats="results/iter{it}/aggregate_stats.parquet",
    output:
        training=report(
            "results/iter{it}/report/training.png",
            caption="../report/training.rst",
            category="2. Training",
            subcategory="Round {it}",
            labels={"figure": "training curves"},
        ),
        estimates=report(
            "results/iter{it}/report/win_rate_estimates.png",
            caption="../report/win_rate_estimates.rst",
            category="2. Training",
            subcategory="Round {it}",
            labels={"figure": "estimated win rates p_w, p_l"},
        ),
    log:
        "results/iter{it}/logs/round_figures.log",
    params:
        script=script("report"),
    wildcard_constraints:
        it=r"[1-9]\d*",
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python {params.script} round --round {wildcards.it} --train-log {input.log}"
        " --pairs {input.pairs} --stats {input.stats} --training {output.training}"
        " --estimates {output.estimates} > {log} 2>&1"


rule report_figures:
    input:
        metrics=round_files("results/iter{it}/eval/metrics.json"),
        judgements=round_files("results/iter{it}/eval/judgements.parquet"),
        responses=["results/iter0/eval/responses.parquet", *round_files("results/iter{it}/eval/responses.parquet")],
        models=round_files("results/iter{it}/model"),
    output:
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
    params:
        script=script("report"),
        # job sizes are left out: they do not change results, so they must not re-run this
        config=lambda wildcards: shlex.quote(
            json.dumps({k: v for k, v in config.items() if k != "resources"})
        ),
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python {params.script} summary --metrics {input.metrics}"
        " --judgements {input.judgements} --responses {input.responses} --models {input.models}"
        " --config-json {params.config} --out-dir results/report > {log} 2>&1"


rule export_alpaca_eval:
    input:
        "results/iter{it}/eval/responses.parquet",
    output:
        "results/export/alpaca_eval_iter{it}.json",
    log:
        "results/export/logs/alpaca_eval_iter{it}.log",
    params:
        script=script("export"),
        generator=lambda wildcards: f"sppo-iter{wildcards.it}",
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python {params.script} alpaca --responses {input} --generator {params.generator}"
        " --out {output} > {log} 2>&1"


rule duckdb_views:
    input:
        round_files("results/iter{it}/eval/judgements.parquet"),
        round_files("results/iter{it}/train_log.csv"),
    output:
        "results/sppo.duckdb",
    log:
        "results/export/logs/duckdb.log",
    params:
        script=script("export"),
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python {params.script} duckdb --out {output} > {log} 2>&1"
