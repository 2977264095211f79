"""What the Snakefile asks of the library: the flags each rule passes its stage script
(``stage_args``) and where a run's outputs live (``layout``). The rule files keep only
Snakemake's own business: inputs, outputs, resources and the shell line."""
