"""Corpus stage: raw files to clean, deduplicated Document parquet (readers, Wikipedia, conversion, filters, dedup)."""
