"""A stack's work as a persisted state machine, driven by the reconciler.

The stack record (kind ``CloudFormationStack`` in the resources table) holds the template, the parameters,
every resource's entry (status, physical id, resolved properties, GetAtt attributes) and ``_work``: the phase
and its queue of items, the first of which is being worked on. A step works one item one call further and
stores the record, so a server killed at any moment resumes where it was:

* forward (CREATE_IN_PROGRESS, UPDATE_IN_PROGRESS): each resource in dependency order is created, updated in
  place or replaced (created anew, the old one kept for the cleanup), its properties resolved when it is
  reached so a Ref or GetAtt sees what it depends on as made. An asynchronous resource (an Endpoint) is
  polled until ready before anything after it starts.
* cleanup (UPDATE_COMPLETE_CLEANUP_IN_PROGRESS): what the update replaced or removed is deleted.
* backward: ROLLBACK_IN_PROGRESS deletes what a failed create made; UPDATE_ROLLBACK_IN_PROGRESS puts back
  what a failed update changed (updates back in place, the replaced ones become current again) and its
  cleanup deletes what the update made; DELETE_IN_PROGRESS deletes everything in reverse order.

Before each call to a type, the item's attempt count is stored, so a type can tell a retry after a crash (its
resource may exist already) from a first attempt.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid

from ...backends import Backends
from ...engines import reconciler
from ...server.errors import AWSError
from ...store.resources import Record, now
from . import templates
from .intrinsics import Scope, evaluate_conditions, resolve
from .resource_types import REGISTRY, Action, ResourceFailed, unsupported

log = logging.getLogger("selfmaker.cloudformation")

KIND = "CloudFormationStack"
POLL_SECONDS = 1.0
MAX_EVENTS = 2000

FORWARD = {"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"}
ACTIVE = frozenset(
    {
        "CREATE_IN_PROGRESS",
        "ROLLBACK_IN_PROGRESS",
        "DELETE_IN_PROGRESS",
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    }
)
# What a phase becomes when its queue is done, and when one of its items fails.
DONE = {
    "CREATE_IN_PROGRESS": "CREATE_COMPLETE",
    "UPDATE_IN_PROGRESS": "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_COMPLETE",
    "ROLLBACK_IN_PROGRESS": "ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_IN_PROGRESS": "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_ROLLBACK_COMPLETE",
    "DELETE_IN_PROGRESS": "DELETE_COMPLETE",
}
FAILED = {
    "ROLLBACK_IN_PROGRESS": "ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_IN_PROGRESS": "UPDATE_ROLLBACK_FAILED",
    "DELETE_IN_PROGRESS": "DELETE_FAILED",
}


# -- the scope a template is resolved in --------------------------------------------------------------------


def parameter_values(data: dict, parsed: templates.Template) -> dict:
    values = {}
    for p in data.get("Parameters", []):
        declared = parsed.parameters.get(p["ParameterKey"], {})
        value = p["ParameterValue"]
        if declared.get("Type") in ("CommaDelimitedList", "List<Number>"):
            value = [v.strip() for v in value.split(",")] if value else []
        values[p["ParameterKey"]] = value
    return values


def scope_of(data: dict, parsed: templates.Template, account_id: str, region: str) -> Scope:
    resources = data.get("_resources", {})

    def ref(logical: str):
        entry = resources.get(logical)
        if entry is None or entry.get("PhysicalResourceId") is None:
            raise ResourceFailed(f"Template error: resource {logical} is not made yet, so Ref cannot name it")
        return entry["PhysicalResourceId"]

    def getatt(logical: str, attribute: str):
        entry = resources.get(logical)
        if entry is None:
            raise ResourceFailed(f"Template error: instance of Fn::GetAtt references undefined resource {logical}")
        kind = REGISTRY.get(entry["ResourceType"])
        if kind is not None and attribute not in kind.attributes:
            raise ResourceFailed(
                f"Template error: resource {logical} does not support attribute type {attribute} in Fn::GetAtt"
            )
        if attribute not in entry.get("Attributes", {}):
            raise ResourceFailed(f"Template error: resource {logical} has no value for {attribute} yet")
        return entry["Attributes"][attribute]

    scope = Scope(
        parameters=parameter_values(data, parsed),
        pseudo={
            "AWS::AccountId": account_id,
            "AWS::Region": region,
            "AWS::StackName": data["StackName"],
            "AWS::StackId": data["StackId"],
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": list(data.get("NotificationARNs", [])),
        },
        conditions={},
        mappings=parsed.mappings,
        ref=ref,
        getatt=getatt,
    )
    try:
        evaluate_conditions(parsed.conditions, scope)
    except ResourceFailed:
        raise templates.format_error(
            "Unresolved dependencies. Cannot reference resources in the Conditions block of the template"
        ) from None
    return scope


def wanted(parsed: templates.Template, scope: Scope) -> list[str]:
    """The resources the template makes under its conditions, in dependency order."""
    return parsed.order(
        name
        for name, resource in parsed.resources.items()
        if "Condition" not in resource or scope.conditions.get(resource["Condition"])
    )


def outputs(data: dict, parsed: templates.Template, scope: Scope) -> list[dict]:
    out = []
    for key, output in parsed.outputs.items():
        if "Condition" in output and not scope.conditions.get(output["Condition"]):
            continue
        value = resolve(output["Value"], scope)
        entry = {"OutputKey": key, "OutputValue": ",".join(map(str, value)) if isinstance(value, list) else str(value)}
        if isinstance(output.get("Description"), str):
            entry["Description"] = output["Description"]
        if "Export" in output:
            entry["ExportName"] = str(resolve(output["Export"].get("Name"), scope))
        out.append(entry)
    return out


# -- events ---------------------------------------------------------------------------------------------


def add_event(data: dict, logical: str, status: str, reason: str | None = None, entry: dict | None = None) -> None:
    event = {
        "StackId": data["StackId"],
        "EventId": str(uuid.uuid4()),
        "StackName": data["StackName"],
        "LogicalResourceId": logical,
        "ResourceType": entry["ResourceType"] if entry else "AWS::CloudFormation::Stack",
        "Timestamp": now(),
        "ResourceStatus": status,
    }
    physical = entry.get("PhysicalResourceId") if entry else data["StackId"]
    if physical:
        event["PhysicalResourceId"] = physical
    if reason:
        event["ResourceStatusReason"] = reason
    if entry and entry.get("Properties") is not None:
        event["ResourceProperties"] = json.dumps(entry["Properties"])
    events = data.setdefault("_events", [])
    events.append(event)
    del events[:-MAX_EVENTS]


def set_stack_status(data: dict, status: str, reason: str | None = None) -> None:
    data["StackStatus"] = status
    if reason:
        data["StackStatusReason"] = reason
    else:
        data.pop("StackStatusReason", None)
    add_event(data, data["StackName"], status, reason)


def set_resource_status(data: dict, entry: dict, status: str, reason: str | None = None) -> None:
    entry["ResourceStatus"] = status
    entry["Timestamp"] = now()
    if reason:
        entry["ResourceStatusReason"] = reason
    else:
        entry.pop("ResourceStatusReason", None)
    add_event(data, entry["LogicalResourceId"], status, reason, entry)


# -- starting work ----------------------------------------------------------------------------------------


def start_forward(data: dict, status: str, account_id: str, region: str) -> None:
    """Queue a create or an update of every resource of the stack's (new) template."""
    parsed = templates.load(data["_template"])
    scope = scope_of(data, parsed, account_id, region)
    data["_work"] = {"phase": status, "items": [{"do": "apply", "logical": name} for name in wanted(parsed, scope)]}
    set_stack_status(data, status, "User Initiated")


def start_delete(data: dict) -> None:
    data["_work"] = {"phase": "DELETE_IN_PROGRESS", "items": _deletions(data, list(data.get("_resources", {})))}
    data["_work"]["items"] += [{"do": "delete", "entry": e, "state": {}} for e in data.pop("_detached", [])]
    set_stack_status(data, "DELETE_IN_PROGRESS", "User Initiated")


def _deletions(data: dict, logicals: list[str]) -> list[dict]:
    """Delete items for these resources, dependents first (the reverse of the template's order)."""
    try:
        parsed = templates.load(data["_template"])
        ordered = [n for n in parsed.order(parsed.resources) if n in logicals]
    except AWSError:
        ordered = []
    ordered += [n for n in logicals if n not in ordered]
    items = []
    for name in reversed(ordered):
        entry = data["_resources"].get(name)
        if entry and entry["ResourceStatus"] not in ("DELETE_COMPLETE",):
            items.append({"do": "delete", "logical": name, "state": {}})
    return items


# -- the reconciler step ------------------------------------------------------------------------------------


def reconcile(backends: Backends, record: Record) -> float | None:
    data = copy.deepcopy(record.data)
    work = data.get("_work")
    if not work or data["StackStatus"] not in ACTIVE:
        return None
    if not work["items"]:
        _finish_phase(data, record)
        _store(backends, record, data)
        return 0.0 if data["StackStatus"] in ACTIVE else None
    item = work["items"][0]
    if item["do"] == "apply":
        _plan(data, item, record)
        _store(backends, record, data)
        return 0.0
    attempts = item["state"].get("attempts", 0)
    if attempts < 2:  # "a call may have acted before" is all a type asks (attempts > 1): no write per poll
        item["state"]["attempts"] = attempts + 1
        if item["do"] == "delete" and attempts == 0:
            entry = item["entry"] if "entry" in item else data["_resources"][item["logical"]]
            set_resource_status(data, entry, "DELETE_IN_PROGRESS")
        _store(backends, record, data)  # the attempt is on record before the call
    before = copy.deepcopy(data)
    done = _run(backends, data, item, record)
    if data != before:
        _store(backends, record, data)
    if done:
        return 0.0
    return POLL_SECONDS if data["StackStatus"] in ACTIVE else None


def _store(backends: Backends, record: Record, data: dict) -> None:
    def change(current: Record, conn) -> bool | None:
        current.data = copy.deepcopy(data)
        current.status = data["StackStatus"]
        return None

    backends.resources.mutate(change, arn=record.arn, touch=False)


def _plan(data: dict, item: dict, record: Record) -> None:
    """Decide what an ``apply`` item does to its resource: create, update in place, replace or nothing."""
    logical = item["logical"]
    resources = data.setdefault("_resources", {})
    parsed = templates.load(data["_template"])
    declared = parsed.resources[logical]
    type_name = declared["Type"]
    entry = resources.get(logical)
    new_entry = {
        "LogicalResourceId": logical,
        "ResourceType": type_name,
        "Properties": None,
        "Attributes": {},
        "State": {},
        "DeletionPolicy": declared.get("DeletionPolicy", "Delete"),
    }
    try:
        kind = REGISTRY.get(type_name)
        if kind is None:
            raise unsupported(type_name)
        properties = resolve(declared.get("Properties", {}), scope_of(data, parsed, record.account_id, record.region))
        kind.check_properties(properties)
    except (ResourceFailed, AWSError) as err:
        if entry is not None and entry.get("ResourceStatus") in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            # The resource itself is unchanged: the failure is an event, and the update's rollback follows.
            _fail(data, copy.deepcopy(entry), "UPDATE_FAILED", _reason(err, type_name), record)
            return
        new_entry["Properties"] = declared.get("Properties", {})
        resources[logical] = new_entry
        data.setdefault("_update", {}).setdefault("journal", []).append({"logical": logical, "how": "created"})
        _fail(data, new_entry, "CREATE_FAILED", _reason(err, type_name), record)
        return
    journal = data.setdefault("_update", {}).setdefault("journal", [])
    live = entry is not None and entry["ResourceStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
    if not live:
        new_entry["Properties"] = properties
        resources[logical] = new_entry
        journal.append({"logical": logical, "how": "created"})
        item.update(do="create", state={})
        set_resource_status(data, new_entry, "CREATE_IN_PROGRESS")
        return
    if entry["ResourceType"] == type_name and entry["Properties"] == properties:
        data["_work"]["items"].pop(0)
        return
    previous = copy.deepcopy(entry)
    if entry["ResourceType"] == type_name and not kind.replaces(entry["Properties"], properties):
        journal.append({"logical": logical, "how": "updated", "previous": previous})
        entry["Properties"] = properties
        item.update(do="update", state=dict(entry["State"]), previous=previous["Properties"])
        set_resource_status(data, entry, "UPDATE_IN_PROGRESS")
        return
    named = kind.name_property
    if named and properties.get(named) and properties.get(named) == previous["Properties"].get(named):
        reason = (
            f"CloudFormation cannot update a stack when a custom-named resource requires replacing. "
            f"Rename {properties[named]} and update the stack again."
        )
        _fail(data, copy.deepcopy(entry), "UPDATE_FAILED", reason, record)
        return
    data.setdefault("_detached", []).append(previous)
    journal.append({"logical": logical, "how": "replaced", "previous": previous})
    new_entry["Properties"] = properties
    resources[logical] = new_entry
    item.update(do="create", state={}, replacing=True)
    set_resource_status(
        data,
        new_entry,
        "UPDATE_IN_PROGRESS",
        "Requested update requires the creation of a new physical resource; hence creating one.",
    )


def _action(backends: Backends, data: dict, record: Record, entry: dict, item: dict) -> Action:
    return Action(
        backends=backends,
        account_id=record.account_id,
        region=record.region,
        stack_name=data["StackName"],
        stack_id=data["StackId"],
        logical_id=entry["LogicalResourceId"],
        type_name=entry["ResourceType"],
        properties=entry.get("Properties") or {},
        previous=item.get("previous"),
        physical_id=entry.get("PhysicalResourceId"),
        attributes=dict(entry.get("Attributes") or {}),
        state={**entry.get("State", {}), **item["state"]},
        stack_tags=list(data.get("Tags", [])),
    )


IDENTITY = ("name", "arn", "generated_name")


def _run(backends: Backends, data: dict, item: dict, record: Record) -> bool:
    """One call of the item's type; True when the item is done (or failed and the phase moved on)."""
    resources = data["_resources"]
    entry = item["entry"] if "entry" in item else resources[item["logical"]]
    kind = REGISTRY.get(entry["ResourceType"])
    action = _action(backends, data, record, entry, item)
    verb = item["do"]
    try:
        if verb == "delete":
            retained = entry.get("DeletionPolicy") == "Retain" and data["_work"]["phase"] == "DELETE_IN_PROGRESS"
            if kind is None or retained:
                finished = True
            elif not entry.get("PhysicalResourceId") and not entry.get("State", {}).get("name"):
                finished = True  # never made
            else:
                finished = kind.delete(action)
        elif kind is None:
            raise unsupported(entry["ResourceType"])
        elif verb == "create":
            finished = kind.create(action)
        else:
            finished = kind.update(action)  # type: ignore[misc]
    except (ResourceFailed, AWSError) as err:
        item["state"] = action.state
        _record_progress(entry, action)
        failure = {"create": "CREATE_FAILED", "update": "UPDATE_FAILED", "delete": "DELETE_FAILED"}[verb]
        if item.get("replacing"):
            failure = "UPDATE_FAILED" if verb != "create" else "CREATE_FAILED"
        _fail(data, entry, failure, _reason(err, entry["ResourceType"]), record)
        return True
    item["state"] = action.state
    _record_progress(entry, action)
    if not finished:
        return False
    data["_work"]["items"].pop(0)
    if verb == "delete":
        skipped = entry.get("DeletionPolicy") == "Retain" and data["_work"]["phase"] == "DELETE_IN_PROGRESS"
        set_resource_status(data, entry, "DELETE_SKIPPED" if skipped else "DELETE_COMPLETE")
    else:
        set_resource_status(
            data, entry, "CREATE_COMPLETE" if verb == "create" and not item.get("replacing") else "UPDATE_COMPLETE"
        )
    return True


def _record_progress(entry: dict, action: Action) -> None:
    if action.physical_id:
        entry["PhysicalResourceId"] = action.physical_id
    entry["Attributes"] = action.attributes
    entry["State"] = {k: v for k, v in action.state.items() if k in IDENTITY}


def _reason(err: Exception, type_name: str = "") -> str:
    """What a failed resource's event says: the type's own words, or the service's error as AWS reports it."""
    if isinstance(err, ResourceFailed):
        return err.reason
    assert isinstance(err, AWSError)
    if err.message.startswith("Template") or not type_name.startswith("AWS::"):
        return err.message
    service = type_name.split("::")[1]
    return (
        f'Resource handler returned message: "{err.message}" '
        f"(Service: {service}, Status Code: {err.status}, Error Code: {err.code})"
    )


# -- failures and phase ends ------------------------------------------------------------------------------


def _fail(data: dict, entry: dict, status: str, reason: str, record: Record) -> None:
    set_resource_status(data, entry, status, reason)
    phase = data["_work"]["phase"]
    if phase in FAILED:  # a rollback or delete that fails stops there
        data["_work"] = None
        set_stack_status(
            data, FAILED[phase], f"The following resource(s) failed to delete: [{entry['LogicalResourceId']}]. "
        )
        return
    if phase in ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"):
        data["_work"]["items"].pop(0)  # a cleanup failure leaves the resource behind, as on AWS
        return
    what = "create" if phase == "CREATE_IN_PROGRESS" else "update"
    summary = f"The following resource(s) failed to {what}: [{entry['LogicalResourceId']}]. "
    if data.get("DisableRollback"):
        data["_work"] = None
        set_stack_status(data, "CREATE_FAILED" if what == "create" else "UPDATE_FAILED", summary)
        return
    if what == "create":
        backward = "DELETE_IN_PROGRESS" if data.get("_on_failure") == "DELETE" else "ROLLBACK_IN_PROGRESS"
        made = [n for n, e in data["_resources"].items() if e["ResourceStatus"] != "DELETE_COMPLETE"]
        data["_work"] = {"phase": backward, "items": _deletions(data, made)}
        set_stack_status(data, backward, summary + "Rollback requested by user.")
        return
    _start_update_rollback(data, summary)


def _start_update_rollback(data: dict, reason: str) -> None:
    """Put back what the update changed: in-place updates are updated back, replaced resources become
    current again; what the update made is deleted by the cleanup that follows."""
    update = data.get("_update", {})
    previous = update.get("previous", {})
    data["_template"] = previous.get("template", data["_template"])
    for key in ("Parameters", "Description", "Tags", "Outputs"):
        if key in previous:
            data[key] = previous[key]
        else:
            data.pop(key, None)
    items: list[dict] = []
    cleanup: list[dict] = []
    detached = data.setdefault("_detached", [])
    for step in reversed(update.get("journal", [])):
        logical = step["logical"]
        current = data["_resources"].get(logical)
        if step["how"] == "created":
            if current:
                cleanup.append({"do": "delete", "entry": current, "state": {}})
                data["_resources"].pop(logical, None)
        elif step["how"] == "replaced":
            if current:
                cleanup.append({"do": "delete", "entry": current, "state": {}})
            old = step["previous"]
            data["_resources"][logical] = old
            detached[:] = [d for d in detached if d.get("PhysicalResourceId") != old.get("PhysicalResourceId")]
        elif step["how"] == "updated" and current is not None:
            old = step["previous"]
            new_properties = current["Properties"]
            current["Properties"] = old["Properties"]
            items.append(
                {
                    "do": "update",
                    "logical": logical,
                    "state": dict(current.get("State", {})),
                    "previous": new_properties,
                }
            )
    data["_work"] = {"phase": "UPDATE_ROLLBACK_IN_PROGRESS", "items": items, "cleanup": cleanup}
    set_stack_status(data, "UPDATE_ROLLBACK_IN_PROGRESS", reason)


def _finish_phase(data: dict, record: Record) -> None:
    work = data["_work"]
    phase = work["phase"]
    if phase in FORWARD:
        try:
            parsed = templates.load(data["_template"])
            data["Outputs"] = outputs(data, parsed, scope_of(data, parsed, record.account_id, record.region))
        except (ResourceFailed, AWSError) as err:
            # An output that cannot be resolved fails the stack like a resource would.
            stack_entry = {"LogicalResourceId": data["StackName"], "ResourceType": "AWS::CloudFormation::Stack"}
            add_event(
                data,
                data["StackName"],
                f"{'CREATE' if phase == 'CREATE_IN_PROGRESS' else 'UPDATE'}_FAILED",
                _reason(err),
                stack_entry,
            )
            if phase == "CREATE_IN_PROGRESS":
                made = [n for n, e in data["_resources"].items() if e["ResourceStatus"] != "DELETE_COMPLETE"]
                data["_work"] = {"phase": "ROLLBACK_IN_PROGRESS", "items": _deletions(data, made)}
                set_stack_status(data, "ROLLBACK_IN_PROGRESS", _reason(err))
            else:
                _start_update_rollback(data, _reason(err))
            return
    following = DONE[phase]
    if phase == "UPDATE_IN_PROGRESS":
        update = data.get("_update", {})
        removed = [n for n in data["_resources"] if n not in _current_logicals(data, record)]
        items = [{"do": "delete", "entry": e, "state": {}} for e in data.pop("_detached", [])]
        items += _deletions(data, removed)
        data["_work"] = {"phase": following, "items": items}
        update.pop("journal", None)
    elif phase == "UPDATE_ROLLBACK_IN_PROGRESS":
        data["_work"] = {"phase": following, "items": work.get("cleanup", [])}
    elif phase == "DELETE_IN_PROGRESS":
        data["_work"] = None
        data["DeletionTime"] = now()
    else:
        data["_work"] = None
    if following in ("UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
        data.pop("_update", None)
        for name in [n for n, e in data["_resources"].items() if e["ResourceStatus"] == "DELETE_COMPLETE"]:
            data["_resources"].pop(name)
    if following == "CREATE_COMPLETE":
        data.pop("_update", None)
    reason = data.get("StackStatusReason") if following in ("ROLLBACK_COMPLETE",) else None
    set_stack_status(data, following, reason)


def _current_logicals(data: dict, record: Record) -> set[str]:
    parsed = templates.load(data["_template"])
    return set(wanted(parsed, scope_of(data, parsed, record.account_id, record.region)))


CONTROLLER = reconciler.register(reconciler.Controller(kind=KIND, active=ACTIVE, reconcile=reconcile))
