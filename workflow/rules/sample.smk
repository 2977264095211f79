# With config shards > 1 each round's sampling is that many jobs, each generating every N-th
# generation batch (vLLM: every N-th prompt), gathered into samples.parquet on the submit host.


rule sample:
    input:
        model=FILES.previous_model,
        prompts="results/prompts/train_iter{it}.parquet",
    output:
        stage_output("results/{chain}iter{it}/samples.parquet", "samples"),
    log:
        FILES.job_file("results/{chain}iter{it}/logs/sample.log"),
    benchmark:
        FILES.job_file("results/{chain}iter{it}/timings/sample.tsv")
    conda:
        generation_env("sample")
    threads: 8
    resources:
        **gpu_job("sample"),
    params:
        cpu_threads=ARGS.cpu_threads,
        args=ARGS.sample,
        shard=FILES.shard_flags,
        python=ARGS.generation_python,
        script=script("sample"),
    shell:
        on_gpus(
            "{params.python} {params.script:q} --model {input.model:q} --prompts {input.prompts:q}"
            " --out {output:q} {params.args} {params.shard} --tensor-parallel-size {resources.gpu}"
        )


# The shards of a sharded stage joined into the table one job would write, and checked (no row
# missing, none twice), on the submit host; eval_generate's and score's are this rule too.
if SHARDS > 1:

    rule gather_samples:
        input:
            expected="results/prompts/train_iter{it}.parquet",
            shards=shard_files("samples"),
        output:
            "results/{chain}iter{it}/samples.parquet",
        log:
            "results/{chain}iter{it}/logs/gather_samples.log",
        benchmark:
            "results/{chain}iter{it}/timings/gather_samples.tsv"
        localrule: True
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=30,
        params:
            table=f"samples --k {config['sample']['k']}",
            expected="--prompts",
            script=script("gather"),
        shell:
            "python {params.script:q} {params.table} {input.shards:q}"
            " {params.expected} {input.expected:q} --out {output:q} > {log:q} 2>&1"
