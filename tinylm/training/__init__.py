"""Training: the trainer loop and its parts (data, optimizer, checkpointer, validation, metrics, distributed)."""
