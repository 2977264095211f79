"""SPPO (Self-Play Preference Optimization) as a reproducible workflow.

Each stage of the Snakemake workflow is a thin script in ``scripts/`` that calls one module here:
``models`` (base_model), ``prompts``, ``generation`` (sample), ``preference`` (score),
``aggregate``, ``training`` and ``loss`` (train), ``evaluation`` (evaluate) and ``summary``.
"""

__version__ = "0.1.0"
