"""Training, synthetic degradations, evaluation and export for camheal models.

Needs the `train` extra (PyTorch, kornia, onnx).
"""
