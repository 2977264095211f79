"""The score stage (rule ``score``): the judges (``judges``: PairRM, a reward model, an LLM
judge, the relevance judge) and the preferences they give every ordered pair of a prompt's
responses (``preferences``)."""

# The name of the judge that ranks the training pairs (judge.*) among the evaluation judges.
TRAINING_JUDGE = "training"
