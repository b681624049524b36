"""A model that leaves the building: a Hugging Face folder (Llama, Mixtral or Granite-MoE), GGUF for llama.cpp and
ollama, and versions in the MLflow model registry."""
