"""Eval graders: OpenAI's testing criteria, graded on this machine. Pure (no database, no HTTP).

``template`` ({{item.x}} placeholders), ``criteria`` (testing criteria: checking their config and
grading one item), ``similarity`` (fuzzy match, BLEU, GLEU, METEOR, ROUGE, cosine), ``sqlexec``
(read-only, time-limited SQLite execution for the ``sql_execution`` criterion).

Running runs is the worker's (``afinar.worker.eval_runs``: generation through the serving path,
grading with these, fenced writes) and the fine-tuning gate too (``afinar.worker.eval_gate``);
counting and comparing results is ``afinar.domain.eval_results``; the API's services are
``afinar.services.evals`` and its neighbours.
"""
