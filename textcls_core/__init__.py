"""textcls core: pure, typed functions for every pipeline stage (no prefect, no mlflow)."""

__version__ = "0.1.0"
