"""Feature Store: feature groups, the online store, the offline store and its journal.

The control-plane operations (sagemaker) are :mod:`.control`, the runtime
(sagemaker-featurestore-runtime) :mod:`.runtime`, the feature group state machine :mod:`.lifecycle`, the background
flusher :mod:`.worker`.
"""
