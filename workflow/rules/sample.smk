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
    params:
        args=sample_args,
        shard=shard_flags,
        with_gpus=script("with_gpus"),
        script=script("sample"),
    conda:
        generation_env()
    threads: 8
    resources:
        gpu=gpus("sample"),
        mem_mb=mem_mb("sample"),
        runtime=runtime("sample"),
        **placement("sample"),
    shell:
        "exec python {params.with_gpus} {resources.gpu} -- python {params.script}"
        " --model {input.model} --prompts {input.prompts} --out {output} {params.args}"
        " {params.shard} --tensor-parallel-size {resources.gpu} --threads {threads} > {log} 2>&1"


if SHARDS > 1:

    rule gather_samples:
        input:
            prompts="results/prompts/train_iter{it}.parquet",
            shards=shard_files("samples"),
        output:
            "results/{chain}iter{it}/samples.parquet",
        log:
            "results/{chain}iter{it}/logs/gather_samples.log",
        params:
            k=config["sample"]["k"],
            script=script("gather"),
        localrule: True
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=30,
        shell:
            "python {params.script} samples {input.shards} --prompts {input.prompts}"
            " --k {params.k} --out {output} > {log} 2>&1"
