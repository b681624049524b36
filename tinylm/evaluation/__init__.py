"""Measuring a trained model: perplexity on held-out text, benchmarks through lm-evaluation-harness, recorded in
MLflow."""
