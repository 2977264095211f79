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
        script=script("sample"),
    conda:
        "../../envs/torch.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=gpu_runtime,
    shell:
        "python {params.script} --model {input.model} --prompts {input.prompts} --out {output}"
        " {params.args} --threads {threads} > {log} 2>&1"
