"""The SageMaker Pipelines definition language (schema 2020-12-01), pure: no I/O, no store.

Parsing and validation (:func:`parse`), expressions (:func:`evaluate`,
:func:`references`), property paths (:func:`lookup`), conditions
(:func:`condition_holds`), parameters (:func:`cast_parameters`) and the
arithmetic of retry and cache policies. The execution engine
(selfmaker/services/pipelines) supplies the values through a :class:`Scope`.
"""

from .conditions import condition_holds
from .definition import Definition, Step, parse
from .errors import ConditionError, DefinitionError, EvaluationError, NotAJsonObject, ParameterError, PropertyError
from .expressions import EXECUTION_VARIABLES, Reference, Scope, evaluate, is_expression, parse_get, references
from .parameters import Parameter, cast_parameters
from .paths import lookup
from .policies import cache_expiry, cache_key, caching, parse_duration, retry_delay

__all__ = [
    "EXECUTION_VARIABLES",
    "ConditionError",
    "Definition",
    "DefinitionError",
    "EvaluationError",
    "NotAJsonObject",
    "Parameter",
    "ParameterError",
    "PropertyError",
    "Reference",
    "Scope",
    "Step",
    "cache_expiry",
    "cache_key",
    "caching",
    "cast_parameters",
    "condition_holds",
    "evaluate",
    "is_expression",
    "lookup",
    "parse",
    "parse_duration",
    "parse_get",
    "references",
    "retry_delay",
]
