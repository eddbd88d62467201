"""Inference Recommender: benchmark a model on candidate endpoint configurations (docs/recommender.md)."""
