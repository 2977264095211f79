"""The report stage (rules ``round_figures``, ``report_figures``, ``summary``, the exports):
figures (``figures``), the HTML pages (``pages``), the summary table (``summary``), the
DuckDB database and AlpacaEval files (``exports``) and the question sets' answers for
their own graders (``answer_exports``)."""
