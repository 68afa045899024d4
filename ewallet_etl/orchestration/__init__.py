"""Orchestration over the pipeline functions (Dagster: definitions.py, an optional extra)."""
