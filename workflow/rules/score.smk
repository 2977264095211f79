# With config shards > 1 each round's scoring is that many jobs, each judging every N-th chunk
# of judge.prompts_per_chunk prompts, gathered into preferences.parquet on the submit host.
# Each judged chunk is written at once to <output>.parts/, not an output: Snakemake keeps it
# when a job fails, and the retry (a time limit, a lost node) judges only the missing chunks.


rule score:
    input:
        samples="results/{chain}iter{it}/samples.parquet",
        judge="results/hub/judge.json",
    output:
        stage_output("results/{chain}iter{it}/preferences.parquet", "preferences"),
    log:
        FILES.job_file("results/{chain}iter{it}/logs/score.log"),
    benchmark:
        FILES.job_file("results/{chain}iter{it}/timings/score.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        **gpu_job("score"),
    params:
        cpu_threads=ARGS.cpu_threads,
        args=ARGS.judge,
        run_only=ARGS.judge_run_only,
        shard=FILES.shard_flags,
        script=script("score"),
    shell:
        on_gpus(
            "python {params.script:q} --samples {input.samples:q} --out {output:q}"
            " {params.args} {params.run_only} {params.shard}"
        )


if SHARDS > 1:

    # localrule is not inherited by a use rule
    use rule gather_samples as gather_preferences with:
        input:
            expected="results/{chain}iter{it}/samples.parquet",
            shards=shard_files("preferences"),
        output:
            "results/{chain}iter{it}/preferences.parquet",
        log:
            "results/{chain}iter{it}/logs/gather_preferences.log",
        benchmark:
            "results/{chain}iter{it}/timings/gather_preferences.tsv"
        localrule: True
        params:
            table=f"preferences --comparisons {config['judge']['comparisons']}",
            expected="--samples",
