"""MLflow: the tracking store, retries, grouped runs, checkpoints as artifacts, lineage."""
