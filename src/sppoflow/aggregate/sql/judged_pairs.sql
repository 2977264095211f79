-- Every prompt of the samples with its K and each judged ordered pair (i, j) as positions in
-- the prompt's response order (NULL positions for a prompt with no judged pair), for the
-- check that the preferences follow one judging plan exactly (sppoflow.score.plans).
WITH positions AS (
    SELECT prompt_id, response_idx,
           row_number() OVER (PARTITION BY prompt_id ORDER BY response_idx) - 1 AS position,
           count(*) OVER (PARTITION BY prompt_id) AS k
    FROM samples
)
SELECT s.prompt_id, s.k, pi.position AS i, pj.position AS j
FROM (SELECT DISTINCT prompt_id, k FROM positions) s
LEFT JOIN preferences p ON p.prompt_id = s.prompt_id
LEFT JOIN positions pi ON pi.prompt_id = p.prompt_id AND pi.response_idx = p.i
LEFT JOIN positions pj ON pj.prompt_id = p.prompt_id AND pj.response_idx = p.j
ORDER BY s.prompt_id, i, j
