"""Step policies: CacheConfig (``ExpireAfter`` durations, cache keys) and RetryPolicies (delays)."""

from __future__ import annotations

import hashlib
import json
import re

STEP_EXCEPTIONS = ("Step.SERVICE_FAULT", "Step.THROTTLING")
JOB_EXCEPTIONS = ("SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT")
MAX_ATTEMPTS_CAP = 20  # the SDK's bounds for a RetryPolicy
MAX_EXPIRE_AFTER_MIN = 14400

# The arguments whose change makes a cached step run again ("Default cache key
# attributes by pipeline step type" in the SageMaker developer guide); output
# locations are not among them, so outputs under a per-execution prefix still hit.
# Step types not listed here key on all their arguments.
CACHE_KEY_MEMBERS = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
    "Transform": ("DataProcessing", "Environment", "ModelName", "TransformInput"),
}

DAY = 86400.0  # a year counts 365 days and a month 30, as calendar-free durations must
_NUMBER = r"(\d+(?:\.\d+)?)"
# ISO 8601 (P1Y2M3W4DT5H6M7S), also without its "P" as the developer guide writes it ("30d", "T16m",
# "30dT5h"), and with hours or seconds before the "T" ("1h"), where they cannot be mistaken.
_DURATION = re.compile(
    rf"P?(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:{_NUMBER}H)?(?:{_NUMBER}S)?"
    rf"(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?",
    re.IGNORECASE,
)


def parse_duration(text: str) -> float:
    """Seconds in a duration: ISO 8601 ("PT1H", "P30D") or the loose forms ("30d", "1h", "T16m")."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()) or text.strip().upper().endswith("T"):
        raise ValueError(f"{text!r} is not a duration such as PT1H, P30D, 30d or 1h")
    years, months, weeks, days, hours, seconds, t_hours, t_minutes, t_seconds = (
        float(g) if g else 0.0 for g in match.groups()
    )
    return (
        (years * 365 + months * 30 + weeks * 7 + days) * DAY
        + (hours + t_hours) * 3600
        + t_minutes * 60
        + seconds
        + t_seconds
    )


def check_cache_config(config) -> None:
    """Validate a CacheConfig; ValueError says which member is wrong."""
    if not isinstance(config, dict):
        raise ValueError("CacheConfig must be an object with Enabled and ExpireAfter")
    unknown = set(config) - {"Enabled", "ExpireAfter"}
    if unknown:
        raise ValueError(f"CacheConfig: unknown member {', '.join(sorted(unknown))}")
    if not isinstance(config.get("Enabled"), bool):
        raise ValueError("CacheConfig.Enabled must be true or false")
    if config.get("ExpireAfter") is not None:
        try:
            parse_duration(config["ExpireAfter"])
        except ValueError as e:
            raise ValueError(f"CacheConfig.ExpireAfter: {e}") from None


def cache_expiry(config: dict | None) -> float | None:
    """Seconds a cached result stays usable; None when ExpireAfter is not set (it does not expire)."""
    return parse_duration(config["ExpireAfter"]) if config and config.get("ExpireAfter") else None


def caching(config: dict | None) -> bool:
    """Whether a step's CacheConfig turns caching on."""
    return bool(config and config.get("Enabled"))


def cache_key(step, resolved_arguments: dict) -> str:
    """A stable digest of what makes a step's result reusable: its type, the key arguments, its property files."""
    members = CACHE_KEY_MEMBERS.get(step.type)
    arguments = (
        dict(resolved_arguments)
        if members is None
        else {name: resolved_arguments[name] for name in members if name in resolved_arguments}
    )
    if isinstance(arguments.get("DebugHookConfig"), dict):  # where tensors are written: an output location
        arguments["DebugHookConfig"] = {k: v for k, v in arguments["DebugHookConfig"].items() if k != "S3OutputPath"}
    document = {"Type": step.type, "Arguments": arguments, "PropertyFiles": list(step.property_files)}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_retry_policies(policies) -> None:
    """Validate RetryPolicies; ValueError names the policy and member at fault."""
    if not isinstance(policies, list):
        raise ValueError("RetryPolicies must be a list")
    for index, policy in enumerate(policies):
        where = f"RetryPolicies[{index}]"
        if not isinstance(policy, dict):
            raise ValueError(f"{where} must be an object")
        unknown = set(policy) - {"ExceptionType", "IntervalSeconds", "BackoffRate", "MaxAttempts", "ExpireAfterMin"}
        if unknown:
            raise ValueError(f"{where}: unknown member {', '.join(sorted(unknown))}")
        types = policy.get("ExceptionType")
        if not isinstance(types, list) or not types:
            raise ValueError(f"{where}.ExceptionType must be a non-empty list")
        for kind in types:
            if kind not in STEP_EXCEPTIONS + JOB_EXCEPTIONS:
                raise ValueError(
                    f"{where}.ExceptionType: {kind!r} is not one of {', '.join(STEP_EXCEPTIONS + JOB_EXCEPTIONS)}"
                )
        for member, low, high in (
            ("IntervalSeconds", 0, None),
            ("BackoffRate", 0, None),
            ("MaxAttempts", 1, MAX_ATTEMPTS_CAP),
            ("ExpireAfterMin", 0, MAX_EXPIRE_AFTER_MIN),
        ):
            value = policy.get(member)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (high and value > high):
                bounds = f"from {low} to {high}" if high else f"at least {low}"
                raise ValueError(f"{where}.{member} must be a number {bounds}, not {value!r}")
        if "MaxAttempts" in policy and "ExpireAfterMin" in policy:
            raise ValueError(f"{where} takes MaxAttempts or ExpireAfterMin, not both")


def retry_delay(policies, error_type: str, attempt: int, first_failure: float, now: float) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` after attempt ``attempt`` failed with ``error_type``.

    None when no policy lists the error type or the policy is spent: MaxAttempts
    counts retries (so MaxAttempts 3 allows 4 attempts), ExpireAfterMin bounds
    the time since the first failure. A policy with neither allows the SDK's
    cap of 20 retries. The first policy that lists the type applies.
    """
    for policy in policies or ():
        if error_type not in policy.get("ExceptionType", ()):
            continue
        retries_done = attempt - 1
        if "ExpireAfterMin" in policy:
            if now - first_failure >= policy["ExpireAfterMin"] * 60:
                return None
        elif retries_done >= policy.get("MaxAttempts", MAX_ATTEMPTS_CAP):
            return None
        return float(policy.get("IntervalSeconds", 1)) * float(policy.get("BackoffRate", 2.0)) ** retries_done
    return None
