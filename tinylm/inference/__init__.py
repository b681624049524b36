"""Using a trained model: generation, chat sessions and the OpenAI-compatible server."""
