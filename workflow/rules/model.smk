rule base_model:
    input:
        "results/hub/policy.json",
    output:
        directory("results/iter0/model"),
    log:
        "results/iter0/logs/base_model.log",
    benchmark:
        "results/iter0/benchmarks/base_model.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        **placement(),
        mem_mb=mem_mb("sample"),  # the whole model in fp32
        runtime=60,
    params:
        cpu_threads=CPU_THREADS,
        args=base_model_args,
        script=script("base_model"),
    shell:
        "python {params.script} {params.args} --threads {threads} {params.cpu_threads}"
        " --out {output} > {log} 2>&1"
