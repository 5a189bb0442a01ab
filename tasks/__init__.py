"""Prefect tasks: thin wrappers over textcls_core that own retries, caching and all MLflow logging."""
