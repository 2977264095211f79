"""Where and how jobs run, below every stage: devices and GPUs (``devices``, ``gpus``,
``gpu_slots``), SLURM placement (``placement``), multi-node launch (``multi_node``),
environments (``environments``), data-parallel shards (``shards``), a stage's arithmetic,
its device's peak and its throughput (``flops``, ``peak``, ``throughput``), job records and
failure lines (``job_records``, ``job_errors``), and a job's state kept for its rerun
(``run_state``)."""
