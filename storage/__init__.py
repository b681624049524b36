"""Workspace layout and on-disk formats: documents, manifests, token shards, checkpoints, tracking."""
