"""Using a trained model: generation and chat sessions, Hugging Face export."""
