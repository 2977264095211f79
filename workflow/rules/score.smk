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
        job_file("results/{chain}iter{it}/logs/score.log"),
    benchmark:
        job_file("results/{chain}iter{it}/benchmarks/score.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        **placement("score"),
        gpu=gpus("score"),
        mem_mb=mem_mb("score"),
        runtime=runtime("score"),
    params:
        cpu_threads=CPU_THREADS,
        args=judge_args,
        run_only=judge_run_only_args,
        shard=shard_flags,
        with_gpus=script("with_gpus"),
        script=script("score"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} -- python {params.script}"
        " --samples {input.samples} --out {output} {params.args} {params.run_only} {params.shard}"
        " --threads {threads} {params.cpu_threads} > {log} 2>&1"


if SHARDS > 1:

    rule gather_preferences:
        input:
            samples="results/{chain}iter{it}/samples.parquet",
            shards=shard_files("preferences"),
        output:
            "results/{chain}iter{it}/preferences.parquet",
        log:
            "results/{chain}iter{it}/logs/gather_preferences.log",
        benchmark:
            "results/{chain}iter{it}/benchmarks/gather_preferences.tsv"
        localrule: True
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=30,
        params:
            script=script("gather"),
        shell:
            "python {params.script} preferences {input.shards} --samples {input.samples}"
            " --out {output} > {log} 2>&1"
