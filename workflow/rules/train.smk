# Resumable state lives in results/{chain}iter{it}/train_state, which is not a declared output:
# Snakemake deletes declared outputs before a job starts, and a retried job should resume.
# On SIGTERM (a SLURM time limit) the trainer saves a checkpoint there; `exec` lets the signal
# reach the GPU wrapper, which passes it on and waits, instead of a shell that would die.
# A job with several GPUs runs one process per GPU through accelerate launch
# (train.accelerate_config: DDP, DeepSpeed ZeRO-3 or FSDP).
# {chain} is "" for a single method and "methods/<name>/" for each of several side by side;
# round 1 of every method trains on the shared samples of the base model (common.smk).
# TensorBoard / W&B files go to results/tracking/{chain}iter{it} (train.report_to), also not an output:
# they are a record of the run that Snakemake neither needs nor deletes.


rule train:
    input:
        model=previous_model,
        samples=round_samples,
        pairs=round_pairs,
        win_rates=round_win_rates,
    output:
        model=directory("results/{chain}iter{it}/model"),
        log="results/{chain}iter{it}/train_log.csv",
    log:
        "results/{chain}iter{it}/logs/train.log",
    benchmark:
        "results/{chain}iter{it}/benchmarks/train.tsv"
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        "../../envs/train.yaml"
    threads: 8
    resources:
        **placement("train"),
        gpu=gpus("train"),
        mem_mb=mem_mb("train"),
        runtime=runtime("train"),
    params:
        cpu_threads=CPU_THREADS,
        args=train_args,
        run_only=train_run_only_args,
        launch=train_launch,
        state="results/{chain}iter{it}/train_state",
        tracking=tracking_args,
        with_gpus=script("with_gpus"),
        script=script("train"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} --process-per-gpu {params.launch} --"
        " {params.script} --model {input.model} --samples {input.samples}"
        " --pairs-table {input.pairs} --win-rates {input.win_rates}"
        " --out {output.model} --log {output.log} --state-dir {params.state}"
        " {params.tracking} {params.args} {params.run_only}"
        " --threads {threads} {params.cpu_threads} > {log} 2>&1"
