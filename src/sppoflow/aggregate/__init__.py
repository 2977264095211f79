"""The aggregate stage (rule ``aggregate``): every response's win rate and each prompt's
winner/loser pair from the round's preferences, in DuckDB (the SQL in ``sql/``)."""
