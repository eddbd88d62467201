"""Amazon EventBridge, the subset SageMaker automation uses (JSON 1.1, ``AWSEvents.*``).

:mod:`.pattern` is the pattern language, :mod:`.rules` the buses, rules, targets and tags,
:mod:`.outbox` the events coming in (PutEvents and SageMaker's state changes), :mod:`.targets`
what a target receives, :mod:`.delivery` the worker that matches and delivers them.
"""
