rule base_model:
    input:
        "results/hub/policy.json",
    output:
        directory("results/iter0/model"),
    log:
        "results/iter0/logs/base_model.log",
    benchmark:
        "results/iter0/timings/base_model.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        **placement(0),
        mem_mb=config["resources"]["sample"]["mem_mb"],  # the whole model in fp32
        runtime=60,
    params:
        cpu_threads=ARGS.cpu_threads,
        args=ARGS.base_model,
        script=script("base_model"),
    shell:
        "python {params.script:q} {params.args} --threads {threads} {params.cpu_threads}"
        " --out {output:q} > {log:q} 2>&1"
