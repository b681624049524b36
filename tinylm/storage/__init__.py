"""Atomic writes, manifests and fingerprints, document parquet, checkpoint directories, the workspace mirror."""
