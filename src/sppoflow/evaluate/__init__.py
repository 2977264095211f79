"""The evaluate stage (rules ``eval_generate``, ``evaluate``, ``head_to_head``,
``question_set_answers``): a round's responses on held-out prompts judged against an opponent's
(``judging``), the statistics of the verdicts (``statistics``, ``length_control``), measures
that need no judge (``text_measures``), the round's metrics file (``round_metrics``), and the
answers to the Arena-Hard and MT-Bench question sets (``question_sets``,
``question_set_answers``)."""
