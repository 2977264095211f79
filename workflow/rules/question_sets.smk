# Answers for Arena-Hard's and MT-Bench's question sets, judged by their own tools outside the workflow (config
# evaluate.question_sets; docs/report.md): every round's model (round 0 is the base model)
# answers Arena-Hard's and MT-Bench's questions, written where and as arena-hard-auto and
# FastChat's llm_judge read them, and each round gets a ready lm-eval command. Nothing here
# reads or stores an API key. Rule all asks for these files only for configured question sets.


rule question_set_answers:
    input:
        model="results/{chain}iter{it}/model",
        questions=question_file,
    output:
        "results/{chain}iter{it}/eval/{question_set}_answers.parquet",
    log:
        "results/{chain}iter{it}/logs/{question_set}_answers.log",
    benchmark:
        "results/{chain}iter{it}/timings/{question_set}_answers.tsv"
    wildcard_constraints:
        question_set=QUESTION_SET_NAMES,
    conda:
        generation_env("evaluate")
    threads: 8
    resources:
        **gpu_job("evaluate"),
    params:
        cpu_threads=ARGS.cpu_threads,
        args=ARGS.question_set_answers,
        python=ARGS.generation_python,
        script=script("question_set_answers"),
    shell:
        on_gpus(
            "{params.python} {params.script:q} --question-set {wildcards.question_set}"
            " --model {input.model:q} --questions {input.questions:q} --out {output:q}"
            " {params.args} --tensor-parallel-size {resources.gpu}"
        )


# The file's name is the model's (<method>-iter<t>), as both tools name a model after its file.
rule export_question_set_answers:
    input:
        answers=FILES.round_question_set_answers,
        questions=question_file,
    output:
        "results/export/{question_set}/model_answer/{name}-iter{it}.jsonl",
    log:
        "results/export/logs/{name}/{question_set}_iter{it}.log",
    benchmark:
        "results/export/timings/{name}/{question_set}_iter{it}.tsv"
    wildcard_constraints:
        question_set=QUESTION_SET_NAMES,
        name=r"[A-Za-z][A-Za-z0-9_.-]*",
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("export"),
        system_prompt=ARGS.system_prompt,
    shell:
        "python {params.script:q} answers --question-set {wildcards.question_set}"
        " --questions {input.questions:q} --answers {input.answers:q} {params.system_prompt}"
        " --out {output:q} > {log:q} 2>&1"


rule export_lm_eval:
    input:
        "results/{chain}iter{it}/model",
    output:
        "results/export/{chain}lm_eval_iter{it}.sh",
    log:
        "results/export/logs/{chain}lm_eval_iter{it}.log",
    benchmark:
        "results/export/timings/{chain}lm_eval_iter{it}.tsv"
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("export"),
        args=ARGS.lm_eval,
    shell:
        "python {params.script:q} lm-eval --model {input:q} {params.args} --out {output:q}"
        " > {log:q} 2>&1"
