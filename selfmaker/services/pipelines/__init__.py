"""SageMaker Pipelines: pipelines and their versions, executions, and the engine that runs them.

- :mod:`.pipeline_resource`: the Pipeline resource: Create/Describe/Update/Delete/ListPipelines, versions
- :mod:`.executions`: the execution operations (Start, Stop, Retry, steps, callbacks)
- :mod:`.engine`: the execution state machine, driven by the reconciler
- :mod:`.steps`: what each step type does; :mod:`.scope`: the values expressions read
"""
