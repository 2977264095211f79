-- One row of statistics for the round, from the views `response_win_rates`, `pairs` and `samples`.
WITH spread AS (
    SELECT prompt_id, max(win_rate) - min(win_rate) AS spread
    FROM response_win_rates GROUP BY prompt_id
),
agreement AS (  -- do the two estimators pick the same winner?
    SELECT prompt_id,
           arg_max(response_idx, win_rate_strength) = arg_max(response_idx, win_rate_direct)
               AS same_winner
    FROM response_win_rates GROUP BY prompt_id
)
SELECT
    $round AS round,
    $estimator AS estimator,
    $plan AS comparisons,
    (SELECT count(DISTINCT prompt_id) FROM samples) AS n_prompts,
    (SELECT count(*) FROM samples) AS n_responses,
    (SELECT count(*) FROM pairs) AS n_pairs,
    (SELECT count(*) FROM spread WHERE spread < $min_spread OR spread = 0) AS n_no_preference,
    (SELECT avg(spread) FROM spread) AS mean_spread,
    (SELECT median(spread) FROM spread) AS median_spread,
    (SELECT avg(p_winner) FROM pairs) AS mean_p_winner,
    (SELECT avg(p_loser) FROM pairs) AS mean_p_loser,
    (SELECT avg(q) FROM pairs) AS mean_q,
    (SELECT avg(same_winner::DOUBLE) FROM agreement) AS estimator_winner_agreement,
    (SELECT avg(response_tokens) FROM samples) AS mean_response_tokens,
    (SELECT avg((finish_reason = 'length')::DOUBLE) FROM samples) AS share_truncated
