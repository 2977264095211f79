"""The train stage: fit pi_theta to the round's preferences, starting from its policy pi_t.

Read it in this order, one module per step of a round:

- ``settings``: the stage's settings and their checks (no torch import, so that validating
  a config stays light);
- ``data``: the round's tables as training examples, and the collator that batches them;
- ``reference``: log pi_t of every training sequence, computed once before the first step;
- ``methods``: the training methods, one module each (SPPO, DPO, IPO), and their registry;
- ``trainer``: transformers' Trainer with the method's loss, and its arguments;
- ``resume``: checkpoints, the step log, signals, and where an interrupted run resumes;
- ``publish``: the trained model folder, written whole or not at all;
- ``round``: ``train_round``, the one call ``scripts/train.py`` makes, and ``train``.

Built on transformers' Trainer, so mixed precision, gradient accumulation, checkpointing,
resume and multi-GPU launch (``accelerate launch``) come from it. The reference pi_t is the
model before the first step, so no second copy of the model sits in memory while training.
"""
