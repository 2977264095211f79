-- The winner/loser pair of each prompt, from the view `response_win_rates` (response_win_rates.sql).
-- q = P(w > l | x): sigmoid(s_w - s_l) for the strength estimator, else both orders' mean
-- (and where a judging plan did not judge the winner against the loser, sigmoid(s_w - s_l)).
-- Prompts whose spread p_w - p_l is below $min_spread carry no preference and are left out.
WITH w AS (SELECT * FROM response_win_rates WHERE is_winner),
     l AS (SELECT * FROM response_win_rates WHERE is_loser)
SELECT w.prompt_id,
       sw.prompt,
       w.response_idx AS winner_idx,
       l.response_idx AS loser_idx,
       sw.response AS winner,
       sl.response AS loser,
       w.win_rate AS p_winner,
       l.win_rate AS p_loser,
       CASE WHEN $estimator = 'strength' THEN 1 / (1 + exp(l.strength - w.strength))
            ELSE coalesce((pwl.prob + 1 - plw.prob) / 2, 1 / (1 + exp(l.strength - w.strength)))
       END AS q,
       w.win_rate - l.win_rate AS spread
FROM w
JOIN l USING (prompt_id)
JOIN samples sw ON sw.prompt_id = w.prompt_id AND sw.response_idx = w.response_idx
JOIN samples sl ON sl.prompt_id = l.prompt_id AND sl.response_idx = l.response_idx
LEFT JOIN preferences pwl
    ON pwl.prompt_id = w.prompt_id AND pwl.i = w.response_idx AND pwl.j = l.response_idx
LEFT JOIN preferences plw
    ON plw.prompt_id = w.prompt_id AND plw.i = l.response_idx AND plw.j = w.response_idx
WHERE w.win_rate - l.win_rate >= $min_spread
  AND w.response_idx <> l.response_idx
ORDER BY w.prompt_id
