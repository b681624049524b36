"""Tokens stage: tokenizer training and loading, encoding, mixing into shard files, chat template and chat data."""
