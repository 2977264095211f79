"""What the Snakefile asks of the library: each rule's flags (``stage_args``), the plan's
cost (``plan_cost``) and the config reference (``config_reference``). Nothing in the
library imports this package."""
