"""Prefect flows and the `textcls` command line: wiring only."""
