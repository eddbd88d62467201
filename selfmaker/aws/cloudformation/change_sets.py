"""Change sets: an update (or a create) described before it is made, then executed or deleted.

A change set is a record of kind ``CloudFormationChangeSet`` (ARN and name its ChangeSetId, ``parent`` its
stack's StackId) holding the template, parameters and tags it would apply and its Changes, computed when it is
created: each resource Add, Remove or Modify, a Modify with Replacement True when a property that cannot change
in place changes (as the stack's update would decide), Conditional when a property depends on a resource that
is itself replaced or added (its new value is known only then). Executing one runs the stack's update (or
create) with exactly that; afterwards the stack's change sets are gone, as on AWS.
"""

from __future__ import annotations

import copy
import uuid

from sqlalchemy import select

from ...engines import reconciler
from ...server.errors import AWSError
from ...server.operations import Context, operation
from ...store import schema
from ...store.resources import Record, now
from . import engine, inputs, templates
from .inputs import validation
from .intrinsics import resolve
from .resource_types import REGISTRY, ResourceFailed
from .stacks import begin_update, find_stack, load_stack, new_stack_data

KIND = "CloudFormationChangeSet"
R = schema.resources
NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."


def change_set_missing(name: str) -> AWSError:
    return AWSError("ChangeSetNotFound", f"ChangeSet [{name}] does not exist", 404)


def _change_sets_of(ctx: Context, stack_id: str, conn=None) -> list[Record]:
    query = (
        select(R.c.arn)
        .where(R.c.kind == KIND, R.c.account_id == ctx.account_id, R.c.region == ctx.region, R.c.parent == stack_id)
        .order_by(R.c.id)
    )

    def run(c) -> list[Record]:
        arns = [row.arn for row in c.execute(query)]
        records = [ctx.backends.resources.get(ctx.account_id, ctx.region, KIND, arn=a, conn=c) for a in arns]
        return [r for r in records if r is not None]

    if conn is not None:
        return run(conn)
    with ctx.store.read() as c:
        return run(c)


def load_change_set(ctx: Context, name: str, stack_name: str | None, conn=None, lock: bool = False) -> Record:
    if name.startswith("arn:"):
        record = ctx.backends.resources.get(ctx.account_id, ctx.region, KIND, arn=name, conn=conn, lock=lock)
    else:
        if not stack_name:
            raise validation("StackName must be specified if ChangeSetName is not specified as an ARN.")
        stack = find_stack(ctx, stack_name, conn=conn)
        if stack is None:
            raise change_set_missing(name)
        found = [r for r in _change_sets_of(ctx, stack.arn, conn) if r.data["ChangeSetName"] == name]
        record = found[0] if found else None
        if record is not None and lock:
            record = ctx.backends.resources.get(ctx.account_id, ctx.region, KIND, arn=record.arn, conn=conn, lock=True)
    if record is None:
        raise change_set_missing(name)
    return record


# -- the changes ------------------------------------------------------------------------------------------


def compute_changes(stack: dict, body: str, values: list[dict], account_id: str, region: str) -> list[dict]:
    parsed = templates.load(body)
    proposed = {**copy.deepcopy(stack), "_template": body, "Parameters": values}
    current = {n: e for n, e in stack.get("_resources", {}).items() if e["ResourceStatus"] not in ("DELETE_COMPLETE",)}
    scope = engine.scope_of(proposed, parsed, account_id, region)
    changing: set[str] = set()
    changes = []
    for logical in engine.wanted(parsed, scope):
        declared = parsed.resources[logical]
        entry = current.get(logical)
        change = {
            "Action": "Add",
            "LogicalResourceId": logical,
            "ResourceType": declared["Type"],
            "Scope": [],
            "Details": [],
        }
        if entry is None or not entry.get("ResourceStatus", "").endswith("COMPLETE"):
            changing.add(logical)
            changes.append(change)
            continue
        kind = REGISTRY.get(declared["Type"])
        change.update(Action="Modify", PhysicalResourceId=entry.get("PhysicalResourceId", ""))
        if entry["ResourceType"] != declared["Type"] or kind is None:
            change.update(Replacement="True", Scope=["Properties"])
            changing.add(logical)
            changes.append(change)
            continue
        depends_on_changing = bool(parsed.dependencies(logical) & changing)
        try:
            properties = resolve(declared.get("Properties", {}), scope)
        except (ResourceFailed, AWSError):
            properties = None
        before = entry.get("Properties") or {}
        if properties == before and not depends_on_changing:
            continue
        names = sorted(set(before) | set(properties or {}))
        changed = [k for k in names if properties is None or before.get(k) != properties.get(k)]
        replaces = kind.replaces(before, properties) if properties is not None else False
        conditional = properties is None or (depends_on_changing and not replaces)
        change["Replacement"] = "True" if replaces else "Conditional" if conditional else "False"
        change["Scope"] = ["Properties"]
        change["Details"] = [
            {
                "Target": {
                    "Attribute": "Properties",
                    "Name": k,
                    "RequiresRecreation": "Never" if k in kind.updatable and kind.update is not None else "Always",
                },
                "Evaluation": "Dynamic" if conditional else "Static",
                "ChangeSource": "DirectModification",
            }
            for k in changed
        ]
        if replaces or conditional:
            changing.add(logical)
        changes.append(change)
    wanted = set(engine.wanted(parsed, scope))
    for logical, entry in current.items():
        if logical not in wanted:
            changes.append(
                {
                    "Action": "Remove",
                    "LogicalResourceId": logical,
                    "PhysicalResourceId": entry.get("PhysicalResourceId", ""),
                    "ResourceType": entry["ResourceType"],
                    "Scope": [],
                    "Details": [],
                }
            )
    return [{"Type": "Resource", "ResourceChange": c} for c in changes]


# -- operations -------------------------------------------------------------------------------------------


@operation("cloudformation", "CreateChangeSet")
def create_change_set(ctx: Context, params: dict) -> dict:
    inputs.refuse_unsupported(params)
    stack_name = params["StackName"]
    change_type = params.get("ChangeSetType", "UPDATE")
    if change_type not in ("CREATE", "UPDATE"):
        raise validation(f"ChangeSetType {change_type} is not supported by SelfMaker's CloudFormation (CREATE, UPDATE)")
    name = params["ChangeSetName"]
    if not inputs.STACK_NAME.fullmatch(name):
        raise validation(f"ChangeSet name {name} must satisfy the pattern [a-zA-Z][-a-zA-Z0-9]*")
    existing = find_stack(ctx, stack_name, deleted=False)
    if change_type == "UPDATE" and existing is None:
        raise validation(f"Stack [{stack_name}] does not exist")
    if change_type == "CREATE" and existing is not None and existing.status != "REVIEW_IN_PROGRESS":
        raise validation(
            f"Stack [{stack_name}] already exists and cannot be created again with the changeSet [{name}]."
        )
    previous = existing.data if existing is not None else None
    body = inputs.template_body(ctx, params, previous=previous.get("_template") if previous else None)
    parsed = inputs.parse_and_check(body, url="TemplateURL" in params)
    values = inputs.parameters(
        parsed, params.get("Parameters"), previous=previous.get("Parameters") if previous else None
    )
    capabilities = inputs.check_capabilities(parsed, params.get("Capabilities"))
    with ctx.store.write() as conn:
        stack = find_stack(ctx, stack_name, deleted=False, conn=conn, lock=True) if existing else None
        if stack is None:
            inputs.check_stack_name(stack_name)
            data = new_stack_data(ctx, {**params, "Parameters": None}, body, parsed, [])
            data["StackStatus"] = "REVIEW_IN_PROGRESS"
            engine.set_stack_status(data, "REVIEW_IN_PROGRESS", "User Initiated")
            stack = ctx.backends.resources.create(
                account_id=ctx.account_id,
                region=ctx.region,
                kind=engine.KIND,
                name=data["StackId"],
                arn=data["StackId"],
                parent=stack_name,
                status="REVIEW_IN_PROGRESS",
                data=data,
                created=data["CreationTime"],
                conn=conn,
            )
        if any(r.data["ChangeSetName"] == name for r in _change_sets_of(ctx, stack.arn, conn)):
            raise AWSError("AlreadyExistsException", f"ChangeSet [{name}] already exists")
        changes = compute_changes(stack.data, body, values, ctx.account_id, ctx.region)
        unchanged = (
            stack.status != "REVIEW_IN_PROGRESS"
            and not changes
            and values == stack.data.get("Parameters")
            and (params.get("Tags") is None or params["Tags"] == stack.data.get("Tags"))
        )
        change_set_id = ctx.arn("cloudformation", f"changeSet/{name}/{uuid.uuid4()}")
        data = {
            "ChangeSetName": name,
            "ChangeSetId": change_set_id,
            "StackId": stack.arn,
            "StackName": stack.data["StackName"],
            "CreationTime": now(),
            "ChangeSetType": change_type,
            "Parameters": values,
            "Capabilities": capabilities,
            "Tags": list(params["Tags"]) if params.get("Tags") is not None else list(stack.data.get("Tags", [])),
            "NotificationARNs": list(params.get("NotificationARNs") or []),
            "Changes": changes,
            "ExecutionStatus": "UNAVAILABLE" if unchanged else "AVAILABLE",
            "Status": "FAILED" if unchanged else "CREATE_COMPLETE",
            "IncludeNestedStacks": False,
            "_template": body,
        }
        if unchanged:
            data["StatusReason"] = NO_CHANGES
        if params.get("Description"):
            data["Description"] = params["Description"]
        if params.get("OnStackFailure"):
            data["OnStackFailure"] = params["OnStackFailure"]
        ctx.backends.resources.create(
            account_id=ctx.account_id,
            region=ctx.region,
            kind=KIND,
            name=change_set_id,
            arn=change_set_id,
            parent=stack.arn,
            status=data["Status"],
            data=data,
            created=data["CreationTime"],
            conn=conn,
        )
    return {"Id": change_set_id, "StackId": stack.arn}


@operation("cloudformation", "DescribeChangeSet")
def describe_change_set(ctx: Context, params: dict) -> dict:
    record = load_change_set(ctx, params["ChangeSetName"], params.get("StackName"))
    out = {k: v for k, v in record.data.items() if not k.startswith("_") and k != "ChangeSetType"}
    out["Parameters"] = inputs.no_echo(templates.load(record.data["_template"]), out.get("Parameters", []))
    if not out["Parameters"]:
        out.pop("Parameters")
    return out


@operation("cloudformation", "ListChangeSets")
def list_change_sets(ctx: Context, params: dict) -> dict:
    stack = load_stack(ctx, params["StackName"])
    summaries = []
    for record in _change_sets_of(ctx, stack.arn):
        data = record.data
        keys = (
            "StackId",
            "StackName",
            "ChangeSetId",
            "ChangeSetName",
            "ExecutionStatus",
            "Status",
            "StatusReason",
            "CreationTime",
            "Description",
        )
        summaries.append({k: data[k] for k in keys if k in data} | {"IncludeNestedStacks": False})
    return {"Summaries": summaries}


@operation("cloudformation", "DeleteChangeSet")
def delete_change_set(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = load_change_set(ctx, params["ChangeSetName"], params.get("StackName"), conn=conn, lock=True)
        if record.data["ExecutionStatus"] == "EXECUTE_IN_PROGRESS":
            raise AWSError(
                "InvalidChangeSetStatus", f"Cannot delete ChangeSet in status {record.data['ExecutionStatus']}"
            )
        ctx.backends.resources.delete(record.arn, conn=conn)
    return {}


@operation("cloudformation", "ExecuteChangeSet")
def execute_change_set(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        change_set = load_change_set(ctx, params["ChangeSetName"], params.get("StackName"), conn=conn, lock=True)
        if change_set.data["ExecutionStatus"] != "AVAILABLE":
            raise AWSError(
                "InvalidChangeSetStatus",
                f"ChangeSet [{change_set.arn}] cannot be executed in its current status of [{change_set.data['Status']}]",
            )
        stack = load_stack(ctx, change_set.data["StackId"], lock=True, conn=conn)
        data = copy.deepcopy(stack.data)
        plan = change_set.data
        if plan["ChangeSetType"] == "CREATE":
            if data["StackStatus"] != "REVIEW_IN_PROGRESS":
                raise validation(f"Stack [{data['StackName']}] already exists")
            data.update(
                _template=plan["_template"],
                Parameters=plan["Parameters"],
                Tags=plan["Tags"],
                Capabilities=plan["Capabilities"],
            )
            if "DisableRollback" in params:
                data["DisableRollback"] = bool(params["DisableRollback"])
            if plan.get("OnStackFailure") == "DELETE":
                data["_on_failure"] = "DELETE"
            elif plan.get("OnStackFailure") == "DO_NOTHING":
                data["DisableRollback"] = True
            description = templates.load(plan["_template"]).description
            if description:
                data["Description"] = description
            data["ChangeSetId"] = change_set.arn
            engine.start_forward(data, "CREATE_IN_PROGRESS", ctx.account_id, ctx.region)
        else:
            begin_update(ctx, stack, data, plan["_template"], plan["Parameters"], {**params, "Tags": plan["Tags"]})
            data["ChangeSetId"] = change_set.arn
        stack.data, stack.status = data, data["StackStatus"]
        ctx.backends.resources.save(stack, conn=conn)
        for record in _change_sets_of(ctx, stack.arn, conn):
            ctx.backends.resources.delete(record.arn, conn=conn)
    reconciler.kick(ctx.backends, stack.arn)
    return {}
