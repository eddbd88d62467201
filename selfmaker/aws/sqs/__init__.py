"""Amazon SQS, standard queues (JSON 1.0, ``AmazonSQS.*``), persisted in the metadata store.

:mod:`.queues` holds the queues and their attributes, :mod:`.messages` the messages.
Other parts of SelfMaker send with :func:`.messages.send_message` (the pipelines' Callback step).
"""
