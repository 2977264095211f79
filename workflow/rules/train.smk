# Resumable state lives in results/iter{it}/train_state, which is not a declared output:
# Snakemake deletes declared outputs before a job starts, and a retried job should resume.
# On SIGTERM (a SLURM time limit) the trainer saves a checkpoint there; `exec` lets the signal
# reach the GPU wrapper, which passes it on and waits, instead of a shell that would die.
# A job with several GPUs runs one process per GPU through accelerate launch
# (train.accelerate_config: DDP, DeepSpeed ZeRO-3 or FSDP).
# TensorBoard / W&B files go to results/tracking/iter{it} (train.report_to), also not an output:
# they are a record of the run that Snakemake neither needs nor deletes.


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
        launch=train_launch,
        state="results/iter{it}/train_state",
        tracking=tracking_args,
        with_gpus=script("with_gpus"),
        script=script("train"),
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        "../../envs/train.yaml"
    threads: 8
    resources:
        gpu=gpus("train"),
        mem_mb=mem_mb("train"),
        runtime=runtime("train"),
        **placement("train"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} --process-per-gpu {params.launch} --"
        " {params.script} --model {input.model} --samples {input.samples}"
        " --pairs-table {input.pairs} --responses {input.responses}"
        " --out {output.model} --log {output.log} --state-dir {params.state}"
        " {params.tracking} {params.args} --threads {threads} > {log} 2>&1"
