"""Feature Store: feature groups, the online store, the offline store and its journal.

Importing this package registers the control-plane operations (sagemaker),
the runtime (sagemaker-featurestore-runtime), the feature group state machine
(lifecycle) and the background flusher (worker).
"""

from . import control, lifecycle, runtime, worker  # noqa: F401
