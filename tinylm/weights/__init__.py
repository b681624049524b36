"""A checkpoint's whole weights and LoRA adapters: below both training, which makes them, and inference, which uses
them."""
