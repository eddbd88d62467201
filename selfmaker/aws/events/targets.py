"""Rule targets: which are accepted (:func:`check_target`), what each receives (Input, InputPath,
InputTransformer) and how it is delivered (:func:`deliver`).

Two kinds of target, both in the rule's own account and region: an SQS queue (the event, or the
target's input, becomes a message, sent through the SQS store's own API) and a SageMaker pipeline
(StartPipelineExecution, run as the rule's account with the request validation a client gets; its
parameters come from SageMakerPipelineParameters, whose values may hold ``<name>`` placeholders
filled from the InputTransformer's InputPathsMap). Each delivery's ClientRequestToken is derived
from the event and the target, so a delivery repeated after a crash starts the same execution
rather than a second one. Anything else is refused when the target is put, never dropped later.
"""

from __future__ import annotations

import hashlib
import json
import re

from ...errors import AWSError, validation

SQS_ARN = re.compile(r"arn:aws:sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>[A-Za-z0-9_-]{1,80})")
PIPELINE_ARN = re.compile(
    r"arn:aws:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):pipeline/(?P<name>[A-Za-z0-9](-*[A-Za-z0-9]){0,255})"
)
_ACCEPTED = {
    "Id",
    "Arn",
    "RoleArn",
    "Input",
    "InputPath",
    "InputTransformer",
    "SageMakerPipelineParameters",
    "RetryPolicy",
}
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.-]+)>")
_PATH_NAME = re.compile(r"[A-Za-z0-9_-]+")
_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")
MAX_INPUT_PATHS = 100

# RetryPolicy's defaults: AWS retries a failing delivery for 24 hours, at most 185 times.
DEFAULT_ATTEMPTS = 185
DEFAULT_AGE_SECONDS = 86_400


def _refuse(target: dict, reason: str) -> AWSError:
    return validation(f"Target {target.get('Id')}: {reason}")


def check_target(ctx, target: dict) -> None:
    """Refuse (ValidationException) what SelfMaker cannot deliver exactly as AWS would."""
    extra = sorted(k for k, v in target.items() if v is not None and k not in _ACCEPTED)
    if extra:
        raise _refuse(
            target,
            f"{', '.join(extra)} is not supported by SelfMaker; targets are SQS queues and SageMaker pipelines "
            "(DeadLetterConfig, SqsParameters for FIFO queues and other targets' parameters are refused).",
        )
    arn = target["Arn"]
    kind = _kind(arn)
    if kind is None:
        raise _refuse(
            target, f"{arn} is not a target SelfMaker delivers to: it delivers to SQS queues and SageMaker pipelines."
        )
    found = (SQS_ARN if kind == "sqs" else PIPELINE_ARN).fullmatch(arn)
    if (found["account"], found["region"]) != (ctx.account_id, ctx.region):
        raise _refuse(
            target, f"{arn} is not in the rule's account and region; cross-account targets are not supported."
        )
    given = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k) is not None]
    if len(given) > 1:
        raise validation("Only one of Input, InputPath, or InputTransformer must be provided.")
    if target.get("SageMakerPipelineParameters") and kind != "pipeline":
        raise _refuse(target, "SageMakerPipelineParameters applies to SageMaker pipeline targets only.")
    if target.get("Input") is not None:
        try:
            json.loads(target["Input"])
        except ValueError:
            raise _refuse(target, "Input is not valid JSON text.") from None
    if target.get("InputPath") is not None:
        _check_path(target, target["InputPath"])
    transformer = target.get("InputTransformer")
    if transformer is not None:
        paths = transformer.get("InputPathsMap") or {}
        if len(paths) > MAX_INPUT_PATHS:
            raise _refuse(target, f"InputPathsMap holds at most {MAX_INPUT_PATHS} entries.")
        for name, path in paths.items():
            if not _PATH_NAME.fullmatch(name) or name.startswith("aws."):
                raise _refuse(target, f"InputPathsMap key {name!r} is not valid.")
            _check_path(target, path)
    if kind == "pipeline" and (given and given != ["InputTransformer"]):
        raise _refuse(
            target,
            f"{given[0]} is not supported for SageMaker pipeline targets by SelfMaker; give the parameters in "
            "SageMakerPipelineParameters, with <name> placeholders from an InputTransformer's InputPathsMap.",
        )


def _kind(arn: str) -> str | None:
    if SQS_ARN.fullmatch(arn):
        return "sqs"
    if PIPELINE_ARN.fullmatch(arn):
        return "pipeline"
    return None


# -- input -------------------------------------------------------------------------------


def _check_path(target: dict, path: str) -> None:
    if _steps(path) is None:
        raise _refuse(target, f"{path!r} is not a JSONPath SelfMaker reads ($, $.a.b, $.a[0], $['a-b']).")


def _steps(path: str) -> list | None:
    if not path.startswith("$"):
        return None
    steps, position = [], 1
    while position < len(path):
        found = _PATH_STEP.match(path, position)
        if not found:
            return None
        name, index, quoted = found.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
        position = found.end()
    return steps


_ABSENT = object()


def read_path(event: dict, path: str):
    """The value at ``path`` in ``event`` (``_ABSENT`` when nothing is there)."""
    value = event
    for step in _steps(path) or []:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return _ABSENT
        elif not isinstance(value, dict) or step not in value:
            return _ABSENT
        value = value[step]
    return value


def _predefined(event: dict, event_text: str, rule_arn: str) -> dict:
    return {
        "aws.events.rule-arn": rule_arn,
        "aws.events.rule-name": rule_arn.rsplit("/", 1)[-1],
        "aws.events.event.ingestion-time": event.get("time"),
        "aws.events.event": event,
        "aws.events.event.json": event,
    }


def _variables(target: dict, event: dict, event_text: str, rule_arn: str) -> dict:
    paths = (target.get("InputTransformer") or {}).get("InputPathsMap") or {}
    found = {name: read_path(event, path) for name, path in paths.items()}
    return {**_predefined(event, event_text, rule_arn), **found}


def _fill(template: str, variables: dict) -> str:
    """The template with each ``<name>`` replaced: inside a JSON string by the value's text (escaped),
    elsewhere by the value as JSON; a name with no value (or no such path in the event) gives null / ""."""
    out, position, quoted = [], 0, False
    for found in _PLACEHOLDER.finditer(template):
        segment = template[position : found.start()]
        quoted = _inside_string(segment, quoted)
        out.append(segment)
        name = found.group(1)
        if name not in variables:
            out.append(found.group(0))  # not a placeholder of ours: text stays as written
        else:
            value = variables[name]
            value = None if value is _ABSENT else value
            if quoted:
                text = value if isinstance(value, str) else ("" if value is None else json.dumps(value))
                out.append(json.dumps(text)[1:-1])
            else:
                out.append(json.dumps(value))
        position = found.end()
    out.append(template[position:])
    return "".join(out)


def _inside_string(segment: str, quoted: bool) -> bool:
    """Whether the text after ``segment`` is inside a JSON string, given whether it started inside one."""
    escaped = False
    for char in segment:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
    return quoted


def message_body(target: dict, event: dict, event_text: str, rule_arn: str) -> str:
    """What an SQS target receives: the event, or the target's Input, InputPath or InputTransformer."""
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath") is not None:
        value = read_path(event, target["InputPath"])
        return "" if value is _ABSENT else (value if isinstance(value, str) else json.dumps(value))
    transformer = target.get("InputTransformer")
    if transformer is not None:
        return _fill(transformer["InputTemplate"], _variables(target, event, event_text, rule_arn))
    return event_text


def pipeline_request(target: dict, event: dict, event_text: str, rule_arn: str) -> dict:
    """StartPipelineExecution's input for a pipeline target; idempotent per (event, rule, target)."""
    variables = _variables(target, event, event_text, rule_arn) if target.get("InputTransformer") else {}
    parameters = []
    for parameter in (target.get("SageMakerPipelineParameters") or {}).get("PipelineParameterList") or []:
        value = parameter["Value"]
        if variables:
            value = _PLACEHOLDER.sub(lambda m: _text(variables.get(m.group(1), _ABSENT), m.group(0)), value)
        parameters.append({"Name": parameter["Name"], "Value": value})
    token = hashlib.sha256(f"{event['id']}\n{rule_arn}\n{target['Id']}".encode()).hexdigest()
    request = {"PipelineName": target["Arn"], "ClientRequestToken": token}
    if parameters:
        request["PipelineParameters"] = parameters
    return request


def _text(value, written: str) -> str:
    if value is _ABSENT:
        return written
    return value if isinstance(value, str) else json.dumps(value)


def target_kind(arn: str) -> str | None:
    return _kind(arn)


def retry_limits(target: dict) -> tuple[int, float]:
    policy = target.get("RetryPolicy") or {}
    attempts = policy.get("MaximumRetryAttempts")
    age = policy.get("MaximumEventAgeInSeconds")
    return (DEFAULT_ATTEMPTS if attempts is None else attempts), (DEFAULT_AGE_SECONDS if age is None else age)
