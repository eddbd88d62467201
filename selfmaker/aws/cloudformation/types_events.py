"""AWS::Events::Rule: an EventBridge rule and its targets, made through SelfMaker's own events operations.

As the CloudFormation resource reference documents it: Ref is the rule's name (``<bus>|<name>`` on a custom
bus), Fn::GetAtt Arn its ARN; Name and EventBusName replace the rule, everything else (pattern, state,
description, role, targets) updates in place. The rule and its targets are one resource: PutRule, then
PutTargets, each through the operation a client calls, so a target SelfMaker cannot deliver to fails the
resource with the events API's own words. Stack tags become the rule's tags, as CloudFormation propagates them.
"""

from __future__ import annotations

import json

from ...server.errors import AWSError
from .resource_types import Action, ResourceFailed, ResourceType, api_params, not_found

EVENTS = "events"
RULE_PROPERTIES = frozenset(
    {"Name", "Description", "EventBusName", "EventPattern", "ScheduleExpression", "State", "RoleArn", "Targets"}
)
MAX_RULE_NAME = 64


def _pattern(action: Action) -> str | None:
    pattern = action.properties.get("EventPattern")
    if pattern is None:
        return None
    # CloudFormation takes the pattern as a JSON object (or YAML mapping) or as JSON text.
    return pattern if isinstance(pattern, str) else json.dumps(pattern)


def _bus(properties: dict) -> str | None:
    bus = properties.get("EventBusName")
    return str(bus) if bus else None


def _rule_request(action: Action) -> dict:
    params: dict = {"Name": action.state["name"]}
    for member in ("Description", "ScheduleExpression", "State", "RoleArn"):
        if action.properties.get(member) is not None:
            params[member] = action.properties[member]
    if (pattern := _pattern(action)) is not None:
        params["EventPattern"] = pattern
    if bus := _bus(action.properties):
        params["EventBusName"] = bus
    return params


def _targets(properties: dict) -> list:
    targets = properties.get("Targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise ResourceFailed("Property Targets must be a list of targets")
    return targets


def _put_targets(action: Action, previous: list) -> None:
    targets = _targets(action.properties)
    bus = _bus(action.properties)
    where = {"Rule": action.state["name"], **({"EventBusName": bus} if bus else {})}
    gone = sorted({t.get("Id") for t in previous} - {t.get("Id") for t in targets})
    if gone:
        action.call(EVENTS, "RemoveTargets", {**where, "Ids": gone})
    if targets:
        action.call(EVENTS, "PutTargets", api_params(EVENTS, "PutTargets", {**where, "Targets": targets}))


def _record(action: Action) -> None:
    name, bus = action.state["name"], _bus(action.properties)
    action.physical_id = f"{bus}|{name}" if bus and bus != "default" else name
    action.attributes["Arn"] = action.state["arn"]


def _describe(action: Action) -> dict | None:
    bus = _bus(action.properties)
    try:
        return action.call(
            EVENTS, "DescribeRule", {"Name": action.state["name"], **({"EventBusName": bus} if bus else {})}
        )
    except AWSError as err:
        if not_found(err):
            return None
        raise


def _create(action: Action) -> bool:
    if "name" not in action.state:
        action.state["name"] = action.name("Name", MAX_RULE_NAME)
        # A first attempt that finds the name taken must not adopt (nor, on rollback, delete) another's rule.
        if _describe(action) is not None:
            action.state.pop("name")
            raise ResourceFailed(f"{action.properties.get('Name')} already exists")
    params = _rule_request(action)
    tags = {t["Key"]: t["Value"] for t in action.stack_tags}
    if tags:
        params["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    action.state["arn"] = action.call(EVENTS, "PutRule", params)["RuleArn"]
    _put_targets(action, [])
    _record(action)
    return True


def _update(action: Action) -> bool:
    action.state.setdefault("name", action.physical_id.split("|")[-1] if action.physical_id else "")
    action.state["arn"] = action.call(EVENTS, "PutRule", _rule_request(action))["RuleArn"]
    _put_targets(action, _targets(action.previous or {}))
    _record(action)
    return True


def _delete(action: Action) -> bool:
    if action.physical_id:
        bus, _, name = action.physical_id.rpartition("|")
    else:  # a create that failed after PutRule: its name is in the state, its bus in the properties
        name, bus = action.state["name"], _bus(action.properties) or ""
    on_bus = {"EventBusName": bus} if bus else {}
    try:
        targets = action.call(EVENTS, "ListTargetsByRule", {"Rule": name, **on_bus})
    except AWSError as err:
        if not_found(err):
            return True
        raise
    ids = [t["Id"] for t in targets.get("Targets") or []]
    if ids:
        action.call(EVENTS, "RemoveTargets", {"Rule": name, "Ids": ids, **on_bus})
    action.call(EVENTS, "DeleteRule", {"Name": name, **on_bus})
    return True


RULE = ResourceType(
    name="AWS::Events::Rule",
    create=_create,
    delete=_delete,
    update=_update,
    updatable=frozenset({"Description", "EventPattern", "ScheduleExpression", "State", "RoleArn", "Targets"}),
    attributes=frozenset({"Arn"}),
    name_property="Name",
    properties=RULE_PROPERTIES,
    description="an EventBridge rule with its targets (SQS queues, SageMaker pipelines); Ref is its name",
).register()
