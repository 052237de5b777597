"""Structured pruning of YOLO detectors with Torch-Pruning's dependency graph, one module per method
behind the `pruner.Pruner` protocol. Only `config` is light: the other modules import torch."""
