"""The prompts stage (rules ``prompt_pool``, ``round_prompts``): the deduplicated pool of
prompts, its held-out evaluation split and each round's prompts (``pool``)."""
