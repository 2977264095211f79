"""The workflow config: loaded and merged (``loading``, ``merging``), validated against the
schema with its defaults filled in (``validation``), checked across keys (``consistency``)
and against the file system (``paths``); its run-only settings (``run_only``) and its
methods, each a chain of rounds (``chains``). The schema itself is ``sppoflow.schema``."""
