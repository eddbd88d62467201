"""An algorithm's TrainingSpecification as a contract: what it allows a training job (or a tuning job) to ask.

CreateAlgorithm checks the specification itself (:func:`check`); CreateTrainingJob with
``AlgorithmSpecification.AlgorithmName`` checks its request against it (:func:`training_request`):
hyperparameters by type and range with defaults filled in, channels, input modes, content and
compression types, instance type and count, metric definitions. Each refusal names the member at fault.
"""

from __future__ import annotations

import json
import math

from ...engines import runtimes
from ...server.errors import validation


def algorithm_metrics(ctx, spec: dict) -> list[dict]:
    """The metric definitions an algorithm's jobs report: its own, and its image's built-in ones (XGBoost's)."""
    from ..jobs.training import ALGORITHM_METRIC_DEFINITIONS  # late: jobs.training imports this module

    return [*(spec.get("MetricDefinitions") or []), *ALGORITHM_METRIC_DEFINITIONS.get(image_algorithm(ctx, spec), [])]


def image_algorithm(ctx, spec: dict) -> str:
    try:
        config = runtimes.load_config(ctx.settings.runtimes_config)
        return runtimes.resolve(spec["TrainingImage"], config).algorithm or ""
    except Exception:
        return ""


def check_image(ctx, image: str | None, where: str) -> None:
    """An image the algorithm names must be one SelfMaker can run (as AWS needs it to be pullable)."""
    if not image:
        raise validation(f"{where} is required.")
    try:
        runtimes.resolve(image, runtimes.load_config(ctx.settings.runtimes_config))
    except runtimes.UnknownImage as err:
        raise validation(f"{where}: {err}") from None


# -- the specification itself -------------------------------------------------------------------------------------

_RANGE_MEMBER = {
    "Integer": "IntegerParameterRangeSpecification",
    "Continuous": "ContinuousParameterRangeSpecification",
    "Categorical": "CategoricalParameterRangeSpecification",
}


def check(ctx, spec: dict) -> None:
    check_image(ctx, spec.get("TrainingImage"), "TrainingSpecification.TrainingImage")
    names: set[str] = set()
    for hp in spec.get("SupportedHyperParameters") or []:
        name, kind = hp["Name"], hp["Type"]
        where = f"SupportedHyperParameters {name}"
        if name in names:
            raise validation(f"SupportedHyperParameters: the hyperparameter {name} is defined twice.")
        names.add(name)
        given = [member for member in (hp.get("Range") or {}) if (hp.get("Range") or {}).get(member) is not None]
        if kind == "FreeText" and given:
            raise validation(f"{where}: a FreeText hyperparameter takes no Range.")
        if given and given != [_RANGE_MEMBER.get(kind)]:
            raise validation(f"{where}: a {kind} hyperparameter's Range is a {_RANGE_MEMBER[kind]}.")
        if kind == "Categorical" and not given:
            raise validation(
                f"{where}: a Categorical hyperparameter needs Range.CategoricalParameterRangeSpecification."
            )
        if kind in ("Integer", "Continuous") and given:
            bounds = hp["Range"][_RANGE_MEMBER[kind]]
            low, high = (_number(kind, bounds[m], f"{where}: {m}") for m in ("MinValue", "MaxValue"))
            if low > high:
                raise validation(
                    f"{where}: MinValue {bounds['MinValue']} is greater than MaxValue {bounds['MaxValue']}."
                )
        if hp.get("DefaultValue") is not None:
            check_value(hp, hp["DefaultValue"], f"{where}: DefaultValue")
    channels: set[str] = set()
    for channel in spec["TrainingChannels"]:
        if channel["Name"] in channels:
            raise validation(f"TrainingChannels: the channel {channel['Name']} is defined twice.")
        channels.add(channel["Name"])
    metrics = {m["Name"] for m in algorithm_metrics(ctx, spec)}
    for goal in spec.get("SupportedTuningJobObjectiveMetrics") or []:
        if goal["MetricName"] not in metrics:
            raise validation(
                f"SupportedTuningJobObjectiveMetrics: {goal['MetricName']} is not among the algorithm's "
                "MetricDefinitions."
            )


def _number(kind: str, text: str, where: str) -> float:
    value = _scalar(text)
    try:
        if kind == "Integer" and isinstance(value, float):
            raise ValueError("an integer's text has no fraction or exponent")  # int(5.7) would be 5
        number = int(value) if kind == "Integer" else float(value)
    except (TypeError, ValueError):
        raise validation(f"{where}: {text!r} is not {'an integer' if kind == 'Integer' else 'a number'}.") from None
    if not math.isfinite(number):
        raise validation(f"{where}: {text!r} is not a finite number.")
    return number


def _scalar(text: str):
    """A hyperparameter value as the algorithm reads it: SDKs may send a JSON-encoded string ('"gbtree"')."""
    try:
        value = json.loads(text)
    except ValueError:
        return text.strip()
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else text.strip()


def check_value(hp: dict, text: str, where: str) -> None:
    """One value against its HyperParameterSpecification: its type, and its range or categories."""
    kind, bounds = hp["Type"], hp.get("Range") or {}
    if kind == "FreeText":
        return
    if kind == "Categorical":
        values = bounds["CategoricalParameterRangeSpecification"]["Values"]
        if str(_scalar(text)) not in values:
            raise validation(f"{where}: {text!r} is not one of the algorithm's values {values}.")
        return
    value = _number(kind, text, where)
    spec = bounds.get(_RANGE_MEMBER[kind])
    if spec is not None:
        low, high = _number(kind, spec["MinValue"], where), _number(kind, spec["MaxValue"], where)
        if not low <= value <= high:
            raise validation(
                f"{where}: {text} is out of the algorithm's range [{spec['MinValue']}, {spec['MaxValue']}]."
            )


# -- a training job's request against it ----------------------------------------------------------------------------


def hyperparameters(spec: dict, given: dict[str, str]) -> dict[str, str]:
    """The job's hyperparameters checked against SupportedHyperParameters, with the defaults filled in."""
    supported = {hp["Name"]: hp for hp in spec.get("SupportedHyperParameters") or []}
    unknown = sorted(set(given) - set(supported))
    if unknown:
        raise validation(
            f"HyperParameters: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not supported by the "
            f"algorithm (it supports: {', '.join(sorted(supported)) or 'none'})."
        )
    out = dict(given)
    for name, hp in supported.items():
        if name in given:
            check_value(hp, given[name], f"Hyperparameter {name}")
        elif hp.get("DefaultValue") is not None:
            out[name] = hp["DefaultValue"]
        elif hp.get("IsRequired"):
            raise validation(f"Hyperparameter {name} is required by the algorithm and has no default value.")
    return out


def channels(spec: dict, input_config: list[dict], job_mode: str | None) -> None:
    declared = {c["Name"]: c for c in spec["TrainingChannels"]}
    given = {c["ChannelName"]: c for c in input_config}
    for name, channel in given.items():
        if name not in declared:
            raise validation(
                f"InputDataConfig: the channel {name} is not among the algorithm's TrainingChannels "
                f"({', '.join(declared)})."
            )
        allowed = declared[name]
        mode = channel.get("InputMode") or job_mode or "File"
        if mode not in allowed["SupportedInputModes"]:
            raise validation(f"Channel {name}: the algorithm does not support the {mode} input mode.")
        content = channel.get("ContentType")
        if content and content not in allowed["SupportedContentTypes"]:
            raise validation(
                f"Channel {name}: the content type {content} is not supported by the algorithm "
                f"({', '.join(allowed['SupportedContentTypes'])})."
            )
        compression = channel.get("CompressionType") or "None"
        if allowed.get("SupportedCompressionTypes") and compression not in allowed["SupportedCompressionTypes"]:
            raise validation(f"Channel {name}: the algorithm does not support {compression} compression.")
    missing = [name for name, c in declared.items() if c.get("IsRequired") and name not in given]
    if missing:
        raise validation(f"InputDataConfig: the algorithm requires the channel(s) {', '.join(missing)}.")


def resources(spec: dict, config: dict) -> None:
    itype = config.get("InstanceType")
    if itype and itype not in spec["SupportedTrainingInstanceTypes"]:
        raise validation(
            f"ResourceConfig.InstanceType {itype} is not supported by the algorithm "
            f"({', '.join(spec['SupportedTrainingInstanceTypes'])})."
        )
    if (config.get("InstanceCount") or 1) > 1 and not spec.get("SupportsDistributedTraining"):
        raise validation("ResourceConfig.InstanceCount: the algorithm does not support distributed training.")


def training_request(spec: dict, params: dict) -> dict[str, str]:
    """Check a CreateTrainingJob request (or a validation profile's training job) against the specification;
    the hyperparameters the job runs with."""
    algorithm = params.get("AlgorithmSpecification") or {}
    if algorithm.get("MetricDefinitions") and spec.get("MetricDefinitions"):
        raise validation(
            "AlgorithmSpecification.MetricDefinitions cannot be given with an algorithm that defines its own "
            "MetricDefinitions."
        )
    mode = algorithm.get("TrainingInputMode") or params.get("TrainingInputMode")
    channels(spec, params.get("InputDataConfig") or [], mode)
    resources(spec, params.get("ResourceConfig") or {})
    return hyperparameters(spec, params.get("HyperParameters") or {})
