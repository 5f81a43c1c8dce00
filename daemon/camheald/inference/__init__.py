"""Inference backends: one small interface, chosen by name (`--backend`), imported lazily."""
