"""Models, below every stage: where a model comes from (``sources``, ``embedded``, ``hub``),
loading and saving it (``loading``, ``safe_loading``), chat templates (``chat``), batching
by tokens (``batching``) and the log-probabilities of responses (``logprobs``)."""
