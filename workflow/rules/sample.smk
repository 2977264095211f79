rule sample:
    input:
        model=previous_model,
        prompts="results/prompts/train_iter{it}.parquet",
    output:
        "results/iter{it}/samples.parquet",
    log:
        "results/iter{it}/logs/sample.log",
    benchmark:
        "results/iter{it}/benchmarks/sample.tsv"
    params:
        args=sample_args,
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
        "python {params.with_gpus} {resources.gpu} -- python {params.script} --model {input.model} --prompts {input.prompts} --out {output}"
        " {params.args} --tensor-parallel-size {resources.gpu} --threads {threads} > {log} 2>&1"
