"""What a stack request hands in, checked: the template (body or URL), the parameters, the capabilities.

A TemplateURL is read from SelfMaker's own S3 only (path style, virtual host or the AWS S3 host names), from a
bucket of the caller's account; anything else is refused: the server fetches no URL a caller names.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import regex

from ...objects.access import AccountObjects
from ...server.errors import AWSError
from ...server.operations import Context
from . import templates
from .resource_types import REGISTRY

STACK_NAME = regex.compile(r"[a-zA-Z][-a-zA-Z0-9]{0,127}")
PATTERN_SECONDS = 0.1  # a template's AllowedPattern is the caller's regex: bounded in time


def validation(message: str) -> AWSError:
    return AWSError("ValidationError", message)


def check_stack_name(name: str) -> str:
    if not STACK_NAME.fullmatch(name):
        raise validation(
            f"1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must "
            "satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
        )
    return name


# Request members SelfMaker's CloudFormation does not act on: refused rather than stored and ignored.
UNSUPPORTED_MEMBERS = (
    "NotificationARNs",
    "RollbackConfiguration",
    "StackPolicyBody",
    "StackPolicyURL",
    "StackPolicyDuringUpdateBody",
    "StackPolicyDuringUpdateURL",
    "ResourcesToImport",
    "DeploymentConfig",
)


def refuse_unsupported(params: dict) -> None:
    for member in UNSUPPORTED_MEMBERS:
        if params.get(member):
            raise validation(f"{member} is not supported by SelfMaker's CloudFormation (see docs/cloudformation.md)")
    if params.get("IncludeNestedStacks"):
        raise validation("Nested stacks are not supported by SelfMaker's CloudFormation")


def template_body(ctx: Context, params: dict, previous: str | None = None) -> str:
    """The template text of a request: TemplateBody, TemplateURL, or (UsePreviousTemplate) the stack's."""
    given = [k for k in ("TemplateBody", "TemplateURL") if params.get(k)]
    if params.get("UsePreviousTemplate"):
        if given:
            raise validation("You cannot specify both usePreviousTemplate and Template Body/Template URL")
        if previous is None:
            raise validation("UsePreviousTemplate needs an existing stack")
        return previous
    if len(given) != 1:
        raise validation(
            "Either Template URL or Template Body must be specified."
            if not given
            else "Specify exactly one of Template Body or Template URL."
        )
    if given[0] == "TemplateBody":
        return params["TemplateBody"]
    return _read_url(ctx, params["TemplateURL"])


def _read_url(ctx: Context, url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = unquote(parts.path).lstrip("/")
    if parts.scheme not in ("http", "https") or not path:
        raise validation(f"TemplateURL must be a supported URL: {url}")
    if ".s3" in host and not host.startswith("s3"):
        bucket, key = host.split(".s3", 1)[0], path
    else:
        bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise validation(f"TemplateURL must name an object in S3: {url}")
    objects = AccountObjects.of(ctx.backends, ctx.account_id)
    try:
        info = objects.head_object(bucket, key)
        if info.size > templates.MAX_URL_BYTES:
            raise validation(f"Template at {url} is larger than {templates.MAX_URL_BYTES} bytes")
        data = objects.get_object(bucket, key)
    except AWSError as err:
        if err.code == "ValidationError":
            raise
        raise validation(
            f"TemplateURL must reference a valid S3 object to which you have access. ({err.code})"
        ) from None
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise validation("Template format error: the template is not UTF-8 text") from None


def parse_and_check(body: str, url: bool = False) -> templates.Template:
    parsed = templates.check(templates.parse(body, templates.MAX_URL_BYTES if url else templates.MAX_BODY_BYTES))
    _check_attributes(parsed, parsed.doc.get("Resources"))
    _check_attributes(parsed, parsed.doc.get("Outputs"))
    return parsed


def _check_attributes(parsed: templates.Template, value) -> None:
    """Every Fn::GetAtt names an attribute its resource's type has (checked before any work, as on AWS)."""
    if isinstance(value, dict):
        if len(value) == 1 and "Fn::GetAtt" in value:
            target = templates.getatt_target(value["Fn::GetAtt"])
            if target and target[0] in parsed.resources:
                kind = REGISTRY.get(parsed.resources[target[0]].get("Type"))
                if kind is not None and target[1] not in kind.attributes:
                    raise templates.template_error(
                        f"resource {target[0]} does not support attribute type {target[1]} in Fn::GetAtt"
                    )
        for item in value.values():
            _check_attributes(parsed, item)
    elif isinstance(value, list):
        for item in value:
            _check_attributes(parsed, item)


def parameters(parsed: templates.Template, given: list[dict] | None, previous: list[dict] | None = None) -> list[dict]:
    """The stack's parameter values: given, previous (UsePreviousValue) or default, each checked."""
    given = given or []
    before = {p["ParameterKey"]: p["ParameterValue"] for p in previous or []}
    unknown = [p["ParameterKey"] for p in given if p.get("ParameterKey") not in parsed.parameters]
    if unknown:
        raise validation(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    values: dict[str, str] = {}
    for p in given:
        key = p["ParameterKey"]
        if p.get("UsePreviousValue"):
            if "ParameterValue" in p:
                raise validation(
                    f"Invalid input for parameter key {key}. Cannot specify usePreviousValue as true and non empty value for a parameter"
                )
            if key not in before:
                raise validation(
                    f"Invalid input for parameter key {key}. Cannot specify usePreviousValue as true for a parameter key not in the previous template"
                )
            values[key] = before[key]
        elif "ParameterValue" in p:
            values[key] = p["ParameterValue"]
    missing = []
    for key, declared in parsed.parameters.items():
        if key not in values:
            if "Default" in declared:
                default = declared["Default"]
                values[key] = ",".join(map(str, default)) if isinstance(default, list) else _text(default)
            else:
                missing.append(key)
    if missing:
        raise validation(f"Parameters: [{', '.join(missing)}] must have values")
    for key, declared in parsed.parameters.items():
        _check_value(key, declared, values[key])
    return [{"ParameterKey": k, "ParameterValue": values[k]} for k in parsed.parameters]


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_value(key: str, declared: dict, value: str) -> None:
    def refuse(what: str) -> AWSError:
        if declared.get("ConstraintDescription"):
            return validation(f"Parameter '{key}' failed to satisfy constraint: {declared['ConstraintDescription']}")
        return validation(f"Parameter '{key}' {what}")

    kind = declared["Type"]
    items = [v.strip() for v in value.split(",")] if kind in ("CommaDelimitedList", "List<Number>") else [value]
    for item in items:
        if kind in ("Number", "List<Number>"):
            try:
                number = float(item)
            except ValueError:
                raise validation(f"Parameter '{key}' must be a number not {item}") from None
            if "MinValue" in declared and number < float(declared["MinValue"]):
                raise refuse(f"must be a number not less than {declared['MinValue']}")
            if "MaxValue" in declared and number > float(declared["MaxValue"]):
                raise refuse(f"must be a number not greater than {declared['MaxValue']}")
        allowed = declared.get("AllowedValues")
        if allowed is not None and item not in [_text(a) for a in allowed]:
            raise refuse("must be one of AllowedValues")
    if "MinLength" in declared and len(value) < int(declared["MinLength"]):
        raise refuse(f"must contain at least {declared['MinLength']} characters")
    if "MaxLength" in declared and len(value) > int(declared["MaxLength"]):
        raise refuse(f"must contain at most {declared['MaxLength']} characters")
    if "AllowedPattern" in declared:
        try:
            matched = regex.fullmatch(str(declared["AllowedPattern"]), value, timeout=PATTERN_SECONDS)
        except (regex.error, TimeoutError):
            matched = None
        if matched is None:
            raise refuse(f"must match pattern {declared['AllowedPattern']}")


def required_capabilities(parsed: templates.Template) -> list[str]:
    needed: set[str] = set()
    for resource in parsed.resources.values():
        kind = REGISTRY.get(resource.get("Type"))
        if kind is not None and kind.capability:
            named = kind.name_property and kind.name_property in resource.get("Properties", {})
            needed.add("CAPABILITY_NAMED_IAM" if named else kind.capability)
    return sorted(needed)


def check_capabilities(parsed: templates.Template, given: list[str] | None) -> list[str]:
    given = list(given or [])
    needed = required_capabilities(parsed)
    missing = [c for c in needed if c not in given and not (c == "CAPABILITY_IAM" and "CAPABILITY_NAMED_IAM" in given)]
    if missing:
        raise AWSError("InsufficientCapabilitiesException", f"Requires capabilities : [{', '.join(missing)}]")
    return given


def no_echo(parsed: templates.Template, values: list[dict]) -> list[dict]:
    """Parameters as Describe shows them: a NoEcho parameter's value is asterisks."""
    out = []
    for p in values:
        secret = str(parsed.parameters.get(p["ParameterKey"], {}).get("NoEcho", "false")).lower() == "true"
        out.append({"ParameterKey": p["ParameterKey"], "ParameterValue": "****" if secret else p["ParameterValue"]})
    return out
