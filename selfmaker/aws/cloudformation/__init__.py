"""AWS CloudFormation, a subset: stacks of SelfMaker's resources, made by its own operations (query protocol).

:mod:`.templates` reads and checks templates, :mod:`.intrinsics` resolves them, :mod:`.resource_types` is the
registry of types (:mod:`.types_sagemaker`, :mod:`.types_aws` fill it), :mod:`.engine` is the stack's state
machine, :mod:`.stacks` and :mod:`.change_sets` the operations. See docs/cloudformation.md.
"""
