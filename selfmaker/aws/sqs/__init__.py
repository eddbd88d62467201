"""Amazon SQS, standard queues (JSON 1.0, ``AmazonSQS.*``), persisted in the metadata store.

:mod:`.queues` holds the queues and their attributes, :mod:`.messages` the messages.
Other parts of SelfMaker send with :func:`send_message` (the pipelines' Callback step).
"""

from . import queues  # noqa: F401  (importing registers the operations)
from .messages import md5_of_attributes, send_message

__all__ = ["md5_of_attributes", "send_message"]
