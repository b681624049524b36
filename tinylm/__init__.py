"""tinylm: raw Chinese and English corpora to a trained small language model, as Prefect flows."""

__version__ = "0.1.0"
