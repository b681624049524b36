"""The decoder-only transformer: torch only, no Prefect, no MLflow."""
