"""The errors of the pipeline language, one per moment they can arise."""

from __future__ import annotations


class DefinitionError(Exception):
    """A pipeline definition is refused at CreatePipeline/UpdatePipeline; the message says what and where."""


class NotAJsonObject(DefinitionError):
    """The definition does not even begin as a JSON object: AWS answers this in its own words."""

    def __init__(self):
        super().__init__("Unable to parse pipeline definition. Expecting start of Json Object.")


class EvaluationError(Exception):
    """An expression cannot be evaluated during an execution; the step that needs it fails with this message."""


class PropertyError(EvaluationError):
    """A property path does not resolve against a document; ``detail`` says where it breaks."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail or message


class ConditionError(EvaluationError):
    """A condition compares values that cannot be compared."""


class ParameterError(ValueError):
    """StartPipelineExecution's parameters do not fit the pipeline's declarations."""
