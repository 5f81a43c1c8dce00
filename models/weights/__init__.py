"""Shipped model weights (ONNX) for camheal; see models/MODEL_CARD.md."""
