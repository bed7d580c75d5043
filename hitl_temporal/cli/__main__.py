"""`python -m hitl_temporal.cli ...`: the `hitl` command without its script (the worker's child processes use it)."""

from hitl_temporal.cli import main

main()
