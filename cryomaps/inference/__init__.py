"""Inference: tiled prediction, map generation and local-resolution estimation."""
