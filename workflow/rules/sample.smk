# With config shards > 1 each round's sampling is that many jobs, each generating every N-th
# generation batch (vLLM: every N-th prompt), gathered into samples.parquet on the submit host.


rule sample:
    input:
        model=previous_model,
        prompts="results/prompts/train_iter{it}.parquet",
    output:
        stage_output("results/{chain}iter{it}/samples.parquet", "samples"),
    log:
        job_file("results/{chain}iter{it}/logs/sample.log"),
    benchmark:
        job_file("results/{chain}iter{it}/benchmarks/sample.tsv")
    conda:
        generation_env("sample")
    threads: 8
    resources:
        **placement("sample"),
        gpu=gpus("sample"),
        mem_mb=mem_mb("sample"),
        runtime=runtime("sample"),
    params:
        cpu_threads=CPU_THREADS,
        args=sample_args,
        shard=shard_flags,
        with_gpus=script("with_gpus"),
        python=generation_python,
        script=script("sample"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} -- {params.python} {params.script}"
        " --model {input.model} --prompts {input.prompts} --out {output} {params.args}"
        " {params.shard} --tensor-parallel-size {resources.gpu}"
        " --threads {threads} {params.cpu_threads} > {log} 2>&1"


if SHARDS > 1:

    rule gather_samples:
        input:
            prompts="results/prompts/train_iter{it}.parquet",
            shards=shard_files("samples"),
        output:
            "results/{chain}iter{it}/samples.parquet",
        log:
            "results/{chain}iter{it}/logs/gather_samples.log",
        benchmark:
            "results/{chain}iter{it}/benchmarks/gather_samples.tsv"
        localrule: True
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=30,
        params:
            k=config["sample"]["k"],
            script=script("gather"),
        shell:
            "python {params.script} samples {input.shards} --prompts {input.prompts}"
            " --k {params.k} --out {output} > {log} 2>&1"
