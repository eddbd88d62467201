"""One module per family of SageMaker operations. Importing this package registers them all."""

from . import catalog, experiments, featurestore, jobs, lineage, metrics, pipelines, registry, search, tagging  # noqa: F401
