"""Algorithm resources: the records, what they allow a training job, and their validation (docs/algorithms.md)."""
