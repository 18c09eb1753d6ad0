"""Evals: OpenAI-shaped evaluations of models, with graders that run on this machine.

Pure parts (no database, no HTTP): ``template`` ({{item.x}} placeholders), ``items`` (eval data
files and item schemas), ``criteria`` (testing criteria: checking and grading), ``similarity``
(fuzzy match, BLEU, GLEU, METEOR, ROUGE, cosine), ``sqlexec`` (read-only, time-limited SQLite
execution for the ``sql_execution`` criterion), ``report`` (counts, comparisons, gate rules),
``requests`` (request checks that need no I/O). ``runner`` executes one run against the container
(generation through the serving path, grading, fenced writes); ``afinar.worker.evals`` claims
queued runs and runs fine-tuning gates.
"""
