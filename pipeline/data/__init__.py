"""Datasets: YAML loading and checks, calibration sampling, the synthetic generator."""
