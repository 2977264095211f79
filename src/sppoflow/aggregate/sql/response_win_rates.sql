-- Each response's estimated win rate against the current policy, P(y_i > pi_t | x),
-- with both estimators. Reads the views `samples` and `preferences`; $estimator is
-- 'strength' or 'direct' and picks the `win_rate` column, the winner and the loser.
-- Sums run over lists ordered by response index, so that the result is the same to the bit
-- whatever order the rows arrive in (a hash join's output order varies with the threads).
WITH k AS (
    SELECT prompt_id, count(*) AS k FROM samples GROUP BY prompt_id
),
ordered AS (  -- every ordered pair (i, j) with its reverse (j, i)
    SELECT p.prompt_id, p.i, p.j,
           p.logit AS logit_ij, r.logit AS logit_ji,
           p.prob AS prob_ij, r.prob AS prob_ji
    FROM preferences p
    JOIN preferences r ON r.prompt_id = p.prompt_id AND r.i = p.j AND r.j = p.i
),
strength AS (  -- the authors' strength (their "score"): s_i = (1/K) sum_j (L[i,j] - L[j,i]); the diagonal adds 0
    -- Under a judging plan that judges n_i < K - 1 partners of i, the mean over the judged
    -- partners stands for the mean over all: s_i = (K - 1)/K mean_j (L[i,j] - L[j,i]).
    SELECT o.prompt_id, o.i AS response_idx,
           CASE WHEN count(*) = any_value(k.k) - 1
                THEN list_sum(list(o.logit_ij - o.logit_ji ORDER BY o.j)) / any_value(k.k)
                ELSE list_sum(list(o.logit_ij - o.logit_ji ORDER BY o.j))
                     * (any_value(k.k) - 1) / (count(*) * any_value(k.k))
           END AS strength,
           -- direct estimator: mean over the judged j != i of both orders' probability that i wins
           list_avg(list((o.prob_ij + 1 - o.prob_ji) / 2 ORDER BY o.j)) AS win_rate_direct
    FROM ordered o JOIN k USING (prompt_id)
    GROUP BY o.prompt_id, o.i
),
strength_win AS (  -- authors' P[i][j] = sigmoid(s_i - s_j); mean over all j, self term 0.5
    SELECT a.prompt_id, a.response_idx,
           list_avg(list(1 / (1 + exp(b.strength - a.strength)) ORDER BY b.response_idx))
               AS win_rate_strength
    FROM strength a JOIN strength b USING (prompt_id)
    GROUP BY a.prompt_id, a.response_idx
),
rated AS (
    SELECT s.prompt_id, s.response_idx, s.strength, w.win_rate_strength, s.win_rate_direct,
           CASE WHEN $estimator = 'strength' THEN w.win_rate_strength ELSE s.win_rate_direct END
               AS win_rate,
           -- ranking key: the authors rank by strength; the direct estimator by its win rate
           CASE WHEN $estimator = 'strength' THEN s.strength ELSE s.win_rate_direct END AS rank_key,
           m.response_tokens
    FROM strength s
    JOIN strength_win w USING (prompt_id, response_idx)
    JOIN samples m USING (prompt_id, response_idx)
)
SELECT prompt_id, response_idx, strength, win_rate_strength, win_rate_direct, win_rate,
       -- ties go to the lowest response_idx, as numpy's argmax/argmin would
       row_number() OVER (PARTITION BY prompt_id ORDER BY rank_key DESC, response_idx) = 1
           AS is_winner,
       row_number() OVER (PARTITION BY prompt_id ORDER BY rank_key ASC, response_idx) = 1
           AS is_loser,
       response_tokens
FROM rated
ORDER BY prompt_id, response_idx
