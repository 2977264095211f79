# Resumable state lives in results/iter{it}/train_state, which is not a declared output:
# Snakemake deletes declared outputs before a job starts, and a retried job should resume.


rule train:
    input:
        model=previous_model,
        samples="results/iter{it}/samples.parquet",
        pairs="results/iter{it}/pairs.parquet",
        responses="results/iter{it}/responses.parquet",
    output:
        model=directory("results/iter{it}/model"),
        log="results/iter{it}/train_log.csv",
    log:
        "results/iter{it}/logs/train.log",
    benchmark:
        "results/iter{it}/benchmarks/train.tsv"
    params:
        args=train_args,
        state="results/iter{it}/train_state",
        script=script("train"),
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=gpu_runtime,
    shell:
        "python {params.script} --model {input.model} --samples {input.samples}"
        " --pairs-table {input.pairs} --responses {input.responses}"
        " --out {output.model} --log {output.log} --state-dir {params.state}"
        " {params.args} --threads {threads} > {log} 2>&1"
