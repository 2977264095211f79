# Hub models are downloaded once, on the submit host (a local rule), into the hub cache; every
# model job then runs with the hub offline. Embedded models and local folders are only
# recorded. A gated model needs HF_TOKEN (or `huggingface-cli login`) where Snakemake runs.


rule fetch_model:
    output:
        "results/hub/{role}.json",
    log:
        "results/hub/logs/fetch_{role}.log",
    benchmark:
        "results/hub/timings/fetch_{role}.tsv"
    wildcard_constraints:
        role=r"policy|judge|eval_judge_[A-Za-z][A-Za-z0-9_.-]*",
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        args=ARGS.fetch,
        script=script("fetch"),
        hub=HUB_ACCESS,
    shell:
        "{params.hub} python {params.script:q} {params.args} --out {output:q} > {log:q} 2>&1"
