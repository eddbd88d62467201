"""Feature Store: feature groups, the online store, the offline store and its journal.

Importing this package registers the control-plane operations (sagemaker),
the runtime (sagemaker-featurestore-runtime) and the background worker.
"""

from . import control, runtime, worker  # noqa: F401
