# Resumable state lives in results/{chain}iter{it}/train_state, which is not a declared output:
# Snakemake deletes declared outputs before a job starts, and a retried job should resume.
# On SIGTERM (a SLURM time limit) the trainer saves a checkpoint there (on_gpus, common.smk).
# A job with several GPUs runs one process per GPU through accelerate launch
# (train.accelerate_config: DDP, DeepSpeed ZeRO-3 or FSDP); with resources.train.nodes above 1,
# one accelerate launch per node under srun (on_gpus, common.smk; sppoflow.runtime.multi_node).
# {chain} is "" for a single method and "methods/<name>/" for each of several side by side;
# round 1 of every method trains on the shared samples of the base model (common.smk).
# TensorBoard / W&B files go to results/tracking/{chain}iter{it} (train.report_to), also not an output:
# they are a record of the run that Snakemake neither needs nor deletes.


rule train:
    input:
        model=FILES.previous_model,
        base=FILES.base_model,
        samples=FILES.sampled("samples.parquet"),
        pairs=FILES.sampled("pairs.parquet"),
        win_rates=FILES.sampled("response_win_rates.parquet"),
    output:
        model=directory("results/{chain}iter{it}/model"),
        log="results/{chain}iter{it}/train_log.csv",
    log:
        "results/{chain}iter{it}/logs/train.log",
    benchmark:
        "results/{chain}iter{it}/timings/train.tsv"
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        "../../envs/train.yaml"
    threads: 8
    resources:
        **gpu_job("train"),
    params:
        cpu_threads=ARGS.cpu_threads,
        args=ARGS.train,
        run_only=ARGS.train_run_only,
        launch=ARGS.train_launch,
        state="results/{chain}iter{it}/train_state",
        base=lambda wildcards, input: (
            f"--base-model {shlex.quote(input.base)}" if input.base else ""
        ),
        tracking=ARGS.tracking,
        script=script("train"),
    shell:
        on_gpus(
            "{params.script:q} --model {input.model:q} {params.base} --samples {input.samples:q}"
            " --pairs-table {input.pairs:q} --win-rates {input.win_rates:q}"
            " --out {output.model:q} --log {output.log:q} --state-dir {params.state:q}"
            " {params.tracking} {params.args} {params.run_only}",
            launch="--process-per-gpu {params.launch}",
            nodes=config["resources"]["train"]["nodes"],
        )
