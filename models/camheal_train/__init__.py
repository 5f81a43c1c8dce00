"""Training, synthetic degradations, evaluation and export for camheal models (needs the `train` extra)."""
