"""Deduplication: exact keys, MinHash signatures, LSH banding, and the persistent index of every earlier corpus."""
