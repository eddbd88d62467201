"""One module per family of SageMaker operations. Importing this package registers them all."""

from . import (  # noqa: F401
    catalog, experiments, featurestore, hosting, jobs, lineage, metrics, pipelines, registry, search, tagging,
)
