"""The sample stage (rule ``sample``): K responses per prompt from the round's policy, with
transformers (``transformers_backend``, its decoding loop in ``decoding``) or vLLM
(``vllm_backend``); both write the same rows (``records``) from the same settings
(``settings``)."""
