"""Hyperparameter tuning jobs: real training jobs searched by Optuna (docs/tuning.md)."""
