"""CloudFormation's stack operations (query protocol): create, update, delete, and what describes a stack.

A stack is a record of kind ``CloudFormationStack`` whose ARN and name are its StackId and whose ``parent``
column is its StackName (a deleted stack keeps its record, found by StackId only, so the name is free again).
The work itself is the reconciler's (engine.py); a handler checks the request, writes the record and kicks it.
"""

from __future__ import annotations

import copy
import json
import uuid

from sqlalchemy import select

from ...engines import reconciler
from ...server.errors import AWSError
from ...server.operations import Context, operation
from ...store import schema
from ...store.resources import ListQuery, Record, now
from . import engine, inputs, templates
from .inputs import validation

R = schema.resources
PAGE = 100
UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}


def stack_missing(name: str) -> AWSError:
    return validation(f"Stack with id {name} does not exist")


def find_stack(ctx: Context, name: str, *, deleted: bool = True, lock: bool = False, conn=None) -> Record | None:
    """The caller's stack by StackId (deleted ones too) or by name (live ones only)."""
    resources = ctx.backends.resources
    if name.startswith("arn:"):
        record = resources.get(ctx.account_id, ctx.region, engine.KIND, arn=name, conn=conn, lock=lock)
        if record is not None and (deleted or record.status != "DELETE_COMPLETE"):
            return record
        return None
    query = select(R.c.arn).where(
        R.c.kind == engine.KIND,
        R.c.account_id == ctx.account_id,
        R.c.region == ctx.region,
        R.c.parent == name,
        R.c.status != "DELETE_COMPLETE",
    )
    if conn is not None:
        row = conn.execute(query).first()
    else:
        with ctx.store.read() as c:
            row = c.execute(query).first()
    return resources.get(ctx.account_id, ctx.region, engine.KIND, arn=row.arn, conn=conn, lock=lock) if row else None


def load_stack(ctx: Context, name: str, **kwargs) -> Record:
    record = find_stack(ctx, name, **kwargs)
    if record is None:
        raise stack_missing(name)
    return record


def new_stack_data(ctx: Context, params: dict, body: str, parsed: templates.Template, values: list[dict]) -> dict:
    stack_id = ctx.arn("cloudformation", f"stack/{params['StackName']}/{uuid.uuid4()}")
    data = {
        "StackId": stack_id,
        "StackName": params["StackName"],
        "CreationTime": now(),
        "Parameters": values,
        "Capabilities": list(params.get("Capabilities") or []),
        "Tags": list(params.get("Tags") or []),
        "NotificationARNs": list(params.get("NotificationARNs") or []),
        "DisableRollback": bool(params.get("DisableRollback")),
        "EnableTerminationProtection": bool(params.get("EnableTerminationProtection")),
        "_template": body,
        "_resources": {},
        "_events": [],
    }
    if parsed.description:
        data["Description"] = parsed.description
    for member in ("RoleARN", "TimeoutInMinutes"):
        if member in params:
            data[member] = params[member]
    return data


def _insert(ctx: Context, data: dict, status: str) -> Record:
    data["StackStatus"] = status
    with ctx.store.write() as conn:
        if find_stack(ctx, data["StackName"], deleted=False, conn=conn) is not None:
            raise AWSError("AlreadyExistsException", f"Stack [{data['StackName']}] already exists")
        return ctx.backends.resources.create(
            account_id=ctx.account_id,
            region=ctx.region,
            kind=engine.KIND,
            name=data["StackId"],
            arn=data["StackId"],
            parent=data["StackName"],
            status=status,
            data=data,
            created=data["CreationTime"],
            conn=conn,
        )


def _save(ctx: Context, record: Record, data: dict, conn) -> None:
    record.data, record.status = data, data["StackStatus"]
    ctx.backends.resources.save(record, conn=conn)


@operation("cloudformation", "CreateStack")
def create_stack(ctx: Context, params: dict) -> dict:
    inputs.check_stack_name(params["StackName"])
    inputs.refuse_unsupported(params)
    if params.get("OnFailure") and "DisableRollback" in params:
        raise validation("You cannot specify both DisableRollback and OnFailure.")
    body = inputs.template_body(ctx, params)
    parsed = inputs.parse_and_check(body, url="TemplateURL" in params)
    values = inputs.parameters(parsed, params.get("Parameters"))
    inputs.check_capabilities(parsed, params.get("Capabilities"))
    data = new_stack_data(ctx, params, body, parsed, values)
    on_failure = params.get("OnFailure", "ROLLBACK")
    data["DisableRollback"] = data["DisableRollback"] or on_failure == "DO_NOTHING"
    data["_on_failure"] = on_failure
    engine.start_forward(data, "CREATE_IN_PROGRESS", ctx.account_id, ctx.region)
    record = _insert(ctx, data, "CREATE_IN_PROGRESS")
    reconciler.kick(ctx.backends, record.arn)
    return {"StackId": data["StackId"]}


def begin_update(ctx: Context, record: Record, data: dict, body: str, values: list[dict], params: dict) -> None:
    """Start an update of ``data`` (the stack's, read under lock) to a new template, parameters and tags."""
    if data["StackStatus"] not in UPDATABLE:
        raise validation(f"Stack:{data['StackId']} is in {data['StackStatus']} state and can not be updated.")
    parsed = templates.load(body)
    data["_update"] = {
        "previous": {
            "template": data["_template"],
            **{k: copy.deepcopy(data[k]) for k in ("Parameters", "Description", "Tags", "Outputs") if k in data},
        },
        "journal": [],
    }
    data["_template"] = body
    data["Parameters"] = values
    if parsed.description:
        data["Description"] = parsed.description
    else:
        data.pop("Description", None)
    if params.get("Tags") is not None:
        data["Tags"] = list(params["Tags"])
    if "DisableRollback" in params:
        data["DisableRollback"] = bool(params["DisableRollback"])
    data["LastUpdatedTime"] = now()
    data["_detached"] = []
    engine.start_forward(data, "UPDATE_IN_PROGRESS", ctx.account_id, ctx.region)


@operation("cloudformation", "UpdateStack")
def update_stack(ctx: Context, params: dict) -> dict:
    inputs.refuse_unsupported(params)
    current = load_stack(ctx, params["StackName"], deleted=False)
    body = inputs.template_body(ctx, params, previous=current.data["_template"])
    parsed = (
        inputs.parse_and_check(body, url="TemplateURL" in params)
        if body != current.data["_template"]
        else templates.load(body)
    )
    values = inputs.parameters(parsed, params.get("Parameters"), previous=current.data.get("Parameters"))
    inputs.check_capabilities(parsed, params.get("Capabilities"))
    with ctx.store.write() as conn:
        record = load_stack(ctx, current.arn, lock=True, conn=conn)
        data = copy.deepcopy(record.data)
        tags = params.get("Tags")
        unchanged = (
            templates.parse(body, templates.MAX_URL_BYTES)
            == templates.parse(data["_template"], templates.MAX_URL_BYTES)
            and values == data.get("Parameters")
            and (tags is None or tags == data.get("Tags"))
        )
        if unchanged and data["StackStatus"] in UPDATABLE:
            raise validation("No updates are to be performed.")
        begin_update(ctx, record, data, body, values, params)
        _save(ctx, record, data, conn)
    reconciler.kick(ctx.backends, record.arn)
    return {"StackId": record.arn}


@operation("cloudformation", "DeleteStack")
def delete_stack(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = find_stack(ctx, params["StackName"], lock=True, conn=conn)
        if record is None or record.status in ("DELETE_COMPLETE", "DELETE_IN_PROGRESS"):
            return {}  # as on AWS: deleting what is not there succeeds
        data = copy.deepcopy(record.data)
        if data.get("EnableTerminationProtection"):
            raise validation(f"Stack [{data['StackName']}] cannot be deleted while TerminationProtection is enabled")
        retain = params.get("RetainResources") or []
        if retain:
            if data["StackStatus"] != "DELETE_FAILED":
                raise validation(
                    f"Invalid operation on stack [{data['StackId']}]. RetainResources can only be specified "
                    "when the stack is in the DELETE_FAILED state"
                )
            for name in retain:
                if name not in data["_resources"]:
                    raise validation(f"The specified resources [{name}] to retain must be in a valid state.")
                data["_resources"][name]["DeletionPolicy"] = "Retain"
        if data["StackStatus"] in engine.ACTIVE:
            raise AWSError(
                "OperationInProgressException",
                f"Stack {data['StackName']} is in {data['StackStatus']} state; delete it once that operation ends",
            )
        engine.start_delete(data)
        _save(ctx, record, data, conn)
    reconciler.kick(ctx.backends, record.arn)
    return {}


@operation("cloudformation", "UpdateTerminationProtection")
def update_termination_protection(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = load_stack(ctx, params["StackName"], deleted=False, lock=True, conn=conn)
        data = copy.deepcopy(record.data)
        data["EnableTerminationProtection"] = bool(params["EnableTerminationProtection"])
        _save(ctx, record, data, conn)
    return {"StackId": record.arn}


# -- describing ----------------------------------------------------------------------------------------------


def stack_view(record: Record) -> dict:
    data = record.data
    out = {k: v for k, v in data.items() if not k.startswith("_")}
    try:
        out["Parameters"] = inputs.no_echo(templates.load(data["_template"]), data.get("Parameters", []))
    except AWSError:
        pass
    if not out.get("Parameters"):
        out.pop("Parameters", None)
    if data.get("DisableRollback") is None:
        out["DisableRollback"] = False
    out["DriftInformation"] = {"StackDriftStatus": "NOT_CHECKED"}
    return out


def _page(ctx: Context, items: list, token: str | None, scope: list) -> tuple[list, dict]:
    start = 0
    if token:
        start = ctx.backends.resources.read_page_token(token, scope, validation("Invalid NextToken"))["o"]
    page = items[start : start + PAGE]
    more = {"NextToken": ctx.backends.resources.page_token(scope, o=start + PAGE)} if start + PAGE < len(items) else {}
    return page, more


def _stacks(ctx: Context) -> list[Record]:
    records, token = [], None
    while True:
        page, token = ctx.backends.resources.list(
            ctx.account_id, ctx.region, engine.KIND, ListQuery(max_results=100, next_token=token)
        )
        records.extend(page)
        if not token:
            return records


@operation("cloudformation", "DescribeStacks")
def describe_stacks(ctx: Context, params: dict) -> dict:
    if params.get("StackName"):
        return {"Stacks": [stack_view(load_stack(ctx, params["StackName"]))]}
    live = [stack_view(r) for r in _stacks(ctx) if r.status != "DELETE_COMPLETE"]
    page, more = _page(ctx, live, params.get("NextToken"), ["DescribeStacks"])
    return {"Stacks": page, **more}


@operation("cloudformation", "ListStacks")
def list_stacks(ctx: Context, params: dict) -> dict:
    wanted = set(params.get("StackStatusFilter") or [])
    summaries = []
    for record in _stacks(ctx):
        if wanted and record.status not in wanted:
            continue
        data = record.data
        summary = {
            k: data[k]
            for k in (
                "StackId",
                "StackName",
                "CreationTime",
                "LastUpdatedTime",
                "DeletionTime",
                "StackStatus",
                "StackStatusReason",
            )
            if k in data
        }
        if data.get("Description"):
            summary["TemplateDescription"] = data["Description"]
        summary["DriftInformation"] = {"StackDriftStatus": "NOT_CHECKED"}
        summaries.append(summary)
    page, more = _page(ctx, summaries, params.get("NextToken"), ["ListStacks", sorted(wanted)])
    return {"StackSummaries": page, **more}


@operation("cloudformation", "DescribeStackEvents")
def describe_stack_events(ctx: Context, params: dict) -> dict:
    record = load_stack(ctx, params["StackName"])
    events = list(reversed(record.data.get("_events", [])))
    page, more = _page(ctx, events, params.get("NextToken"), ["DescribeStackEvents", record.arn])
    return {"StackEvents": page, **more}


def _resource(record: Record, entry: dict, detail: bool = False) -> dict:
    out = {
        "StackName": record.data["StackName"],
        "StackId": record.arn,
        "LogicalResourceId": entry["LogicalResourceId"],
        "ResourceType": entry["ResourceType"],
        "ResourceStatus": entry["ResourceStatus"],
        "DriftInformation": {"StackResourceDriftStatus": "NOT_CHECKED"},
    }
    out["LastUpdatedTimestamp" if detail else "Timestamp"] = entry.get("Timestamp") or record.created_at
    if entry.get("PhysicalResourceId"):
        out["PhysicalResourceId"] = entry["PhysicalResourceId"]
    if entry.get("ResourceStatusReason"):
        out["ResourceStatusReason"] = entry["ResourceStatusReason"]
    if detail:
        try:
            metadata = (
                templates.load(record.data["_template"]).resources.get(entry["LogicalResourceId"], {}).get("Metadata")
            )
        except AWSError:
            metadata = None
        if metadata is not None:
            out["Metadata"] = json.dumps(metadata)
    return out


def _entries(record: Record) -> list[dict]:
    return list(record.data.get("_resources", {}).values())


@operation("cloudformation", "DescribeStackResources")
def describe_stack_resources(ctx: Context, params: dict) -> dict:
    name, physical = params.get("StackName"), params.get("PhysicalResourceId")
    if not name and not physical:
        raise validation("Either StackName or PhysicalResourceId must be specified.")
    if name:
        records = [load_stack(ctx, name)]
    else:
        records = [r for r in _stacks(ctx) if any(e.get("PhysicalResourceId") == physical for e in _entries(r))]
        if not records:
            raise stack_missing(str(physical))
        records = records[-1:]
    logical = params.get("LogicalResourceId")
    out = []
    for record in records:
        for entry in _entries(record):
            if logical and entry["LogicalResourceId"] != logical:
                continue
            out.append(_resource(record, entry))
    return {"StackResources": out}


@operation("cloudformation", "DescribeStackResource")
def describe_stack_resource(ctx: Context, params: dict) -> dict:
    record = load_stack(ctx, params["StackName"])
    entry = record.data.get("_resources", {}).get(params["LogicalResourceId"])
    if entry is None:
        raise validation(f"Resource {params['LogicalResourceId']} does not exist for stack {params['StackName']}")
    return {"StackResourceDetail": _resource(record, entry, detail=True)}


@operation("cloudformation", "ListStackResources")
def list_stack_resources(ctx: Context, params: dict) -> dict:
    record = load_stack(ctx, params["StackName"])
    summaries = []
    for entry in _entries(record):
        view = _resource(record, entry, detail=True)
        summaries.append({k: v for k, v in view.items() if k not in ("StackName", "StackId", "Metadata")})
    summaries = [{**s, "DriftInformation": {"StackResourceDriftStatus": "NOT_CHECKED"}} for s in summaries]
    page, more = _page(ctx, summaries, params.get("NextToken"), ["ListStackResources", record.arn])
    return {"StackResourceSummaries": page, **more}


@operation("cloudformation", "GetTemplate")
def get_template(ctx: Context, params: dict) -> dict:
    if params.get("ChangeSetName"):
        from .change_sets import load_change_set

        change_set = load_change_set(ctx, params["ChangeSetName"], params.get("StackName"))
        return {"TemplateBody": change_set.data["_template"], "StagesAvailable": ["Original", "Processed"]}
    if not params.get("StackName"):
        raise validation("StackName or ChangeSetName must be specified")
    record = load_stack(ctx, params["StackName"])
    return {"TemplateBody": record.data["_template"], "StagesAvailable": ["Original", "Processed"]}


def _parameter_declarations(parsed: templates.Template, summary: bool) -> list[dict]:
    out = []
    for key, p in parsed.parameters.items():
        declared: dict = {"ParameterKey": key, "NoEcho": str(p.get("NoEcho", "false")).lower() == "true"}
        if "Default" in p:
            default = p["Default"]
            declared["DefaultValue"] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        if isinstance(p.get("Description"), str):
            declared["Description"] = p["Description"]
        if summary:
            declared["ParameterType"] = p["Type"]
            declared["ParameterConstraints"] = {"AllowedValues": [str(v) for v in p.get("AllowedValues") or []]}
        out.append(declared)
    return out


def _capabilities(parsed: templates.Template, out: dict) -> dict:
    capabilities = inputs.required_capabilities(parsed)
    if capabilities:
        out["Capabilities"] = capabilities
        out["CapabilitiesReason"] = "The following resource(s) require capabilities: [AWS::IAM::Role]"
    if parsed.description:
        out["Description"] = parsed.description
    return out


@operation("cloudformation", "ValidateTemplate")
def validate_template(ctx: Context, params: dict) -> dict:
    body = inputs.template_body(ctx, params)
    parsed = inputs.parse_and_check(body, url="TemplateURL" in params)
    return _capabilities(parsed, {"Parameters": _parameter_declarations(parsed, summary=False)})


@operation("cloudformation", "GetTemplateSummary")
def get_template_summary(ctx: Context, params: dict) -> dict:
    if params.get("StackSetName"):
        raise validation("Stack sets are not supported by SelfMaker's CloudFormation")
    sources = [k for k in ("TemplateBody", "TemplateURL", "StackName") if params.get(k)]
    if len(sources) != 1:
        raise validation("Specify exactly one of TemplateBody, TemplateURL or StackName.")
    if sources[0] == "StackName":
        parsed = templates.load(load_stack(ctx, params["StackName"]).data["_template"])
    else:
        parsed = inputs.parse_and_check(inputs.template_body(ctx, params), url="TemplateURL" in params)
    out = {
        "Parameters": _parameter_declarations(parsed, summary=True),
        "ResourceTypes": sorted({r["Type"] for r in parsed.resources.values()}),
        "Version": str(parsed.doc.get("AWSTemplateFormatVersion", "2010-09-09")),
    }
    if "Metadata" in parsed.doc:
        out["Metadata"] = json.dumps(parsed.doc["Metadata"])
    return _capabilities(parsed, out)
