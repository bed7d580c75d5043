"""One home per table: every query on `decision_traces`, `precedents` and the directory is here.

Activities, the CLI and the report call these functions with a connection or pool they own; no
other module writes SQL for these tables (the demo seed inserts its rows through them too where
it can). Schema: `activities/migrations/`.
"""
