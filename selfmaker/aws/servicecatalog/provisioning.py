"""Provisioned products: each one CloudFormation stack, made, updated and deleted by SelfMaker's engine.

ProvisionProduct, UpdateProvisionedProduct and TerminateProvisionedProduct each write a record (``rec-...``)
and start the stack's work through CloudFormation's own operations (``SC-<account>-<pp id>``, as Service
Catalog names its stacks), then the provisioned product is ``UNDER_CHANGE``. Its controller (a reconciler
step: a restarted server resumes it) follows the stack to its end and settles both: ``AVAILABLE`` and
``SUCCEEDED`` (the stack's outputs become the record's), ``ERROR`` after a failed launch (the stack rolled
back), ``TAINTED`` after a failed update (the stack rolled back to the previous version), and a terminated
product is gone. Records stay, as Service Catalog keeps them.
"""

from __future__ import annotations

import regex

from ...engines import reconciler
from ...server.errors import AWSError
from ...server.operations import Context, call, operation
from ...store import tag_store
from ...store.resources import AlreadyExists, Record, now
from . import catalog
from .catalog import SERVICE, invalid, new_id, not_found

PROVISIONED = "ServiceCatalogProvisionedProduct"
RECORD = "ServiceCatalogRecord"
ACTIVE = frozenset({"UNDER_CHANGE"})
NAME = regex.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}")
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


def _cfn(account_id: str, region: str, backends) -> Context:
    return Context(backends=backends, account_id=account_id, region=region, service="cloudformation")


def _provisioned(ctx: Context, name: str | None, pp_id: str | None, conn=None, lock: bool = False) -> Record:
    """The caller's provisioned product by name, ARN or id."""
    resources = ctx.backends.resources
    record = None
    if name:
        if name.startswith("arn:"):
            record = resources.get(ctx.account_id, ctx.region, PROVISIONED, arn=name, conn=conn, lock=lock)
        else:
            record = resources.get(ctx.account_id, ctx.region, PROVISIONED, name=name, conn=conn, lock=lock)
    elif pp_id:
        for candidate in resources.iterate(ctx.account_id, ctx.region, [PROVISIONED]):
            if candidate.data["Id"] == pp_id:
                record = resources.get(ctx.account_id, ctx.region, PROVISIONED, arn=candidate.arn, conn=conn, lock=lock)
                break
    else:
        raise invalid("Either ProvisionedProductName or ProvisionedProductId must be given.")
    if record is None:
        raise not_found(f"Provisioned product {name or pp_id} not found.")
    return record


def _new_record(ctx: Context, pp: dict, record_type: str, tags: list[dict], conn) -> dict:
    record_id = new_id("rec-")
    created = now()
    detail = {
        "RecordId": record_id,
        "ProvisionedProductName": pp["Name"],
        "Status": "IN_PROGRESS",
        "CreatedTime": created,
        "UpdatedTime": created,
        "ProvisionedProductType": "CFN_STACK",
        "RecordType": record_type,
        "ProvisionedProductId": pp["Id"],
        "ProductId": pp["ProductId"],
        "ProvisioningArtifactId": pp["ProvisioningArtifactId"],
        "RecordErrors": [],
        "RecordTags": tags,
    }
    if pp.get("_path"):
        detail["PathId"] = pp["_path"]
    ctx.backends.resources.create(
        account_id=ctx.account_id,
        region=ctx.region,
        kind=RECORD,
        name=record_id,
        arn=ctx.arn("servicecatalog", f"record/{record_id}"),
        data=detail,
        status="IN_PROGRESS",
        conn=conn,
    )
    return detail


def _path(ctx: Context, product: Record, params: dict) -> str:
    paths = catalog.launch_paths(ctx, product)
    if params.get("PathId"):
        paths = [p for p in paths if p["Id"] == params["PathId"]]
    elif params.get("PathName"):
        paths = [p for p in paths if p["Name"] == params["PathName"]]
    if not paths:
        raise not_found(f"No launch path found for product {product.name}: it must be in one of your portfolios.")
    return paths[0]["Id"]


def _parameters(given: list[dict] | None) -> list[dict]:
    out = []
    for parameter in given or []:
        if parameter.get("UsePreviousValue"):
            out.append({"ParameterKey": parameter["Key"], "UsePreviousValue": True})
        else:
            out.append({"ParameterKey": parameter["Key"], "ParameterValue": parameter.get("Value", "")})
    return out


def _refuse_unsupported(params: dict) -> None:
    if params.get("NotificationArns"):
        raise invalid("NotificationArns is not supported by SelfMaker's Service Catalog.")
    if params.get("ProvisioningPreferences"):
        raise invalid("ProvisioningPreferences (stack sets) is not supported by SelfMaker's Service Catalog.")


def _view(record: Record) -> dict:
    return {k: v for k, v in record.data.items() if not k.startswith("_")}


@operation(SERVICE, "ProvisionProduct")
def provision_product(ctx: Context, params: dict) -> dict:
    _refuse_unsupported(params)
    name = params["ProvisionedProductName"]
    if not NAME.fullmatch(name):
        raise invalid(f"ProvisionedProductName {name} is not valid: letters, digits, '.', '_' and '-', at most 128.")
    token = params["ProvisionToken"]
    for existing in ctx.backends.resources.iterate(ctx.account_id, ctx.region, [PROVISIONED]):
        if existing.data.get("IdempotencyToken") == token and existing.name == name:
            return {"RecordDetail": _record(ctx, existing.data["LastRecordId"])}
    if ctx.backends.resources.get(ctx.account_id, ctx.region, PROVISIONED, name=name) is not None:
        raise _duplicate(name)
    product = catalog.product(ctx, params.get("ProductId"), params.get("ProductName"))
    if not (params.get("ProvisioningArtifactId") or params.get("ProvisioningArtifactName")):
        raise invalid("Either ProvisioningArtifactId or ProvisioningArtifactName must be given.")
    entry = catalog.artifact(product, params.get("ProvisioningArtifactId"), params.get("ProvisioningArtifactName"))
    path = _path(ctx, product, params)
    pp_id = new_id("pp-")
    stack_name = f"SC-{ctx.account_id}-{pp_id}"
    pp = {
        "Name": name,
        "Arn": ctx.arn("servicecatalog", f"stack/{name}/{pp_id}"),
        "Type": "CFN_STACK",
        "Id": pp_id,
        "Status": "UNDER_CHANGE",
        "CreatedTime": now(),
        "IdempotencyToken": token,
        "ProductId": product.name,
        "ProvisioningArtifactId": entry["Id"],
        "_path": path,
        "_product_name": product.data["Name"],
        "_artifact_name": entry["Name"],
        "_template": entry["_template"],
    }
    tags = params.get("Tags") or []
    try:
        stack = call(
            _cfn(ctx.account_id, ctx.region, ctx.backends),
            "CreateStack",
            {
                "StackName": stack_name,
                "TemplateBody": entry["_template"],
                "Capabilities": CAPABILITIES,
                "Parameters": _parameters(params.get("ProvisioningParameters")),
                **({"Tags": tags} if tags else {}),
            },
        )
    except AWSError as err:
        raise invalid(err.message) from None
    pp["PhysicalId"] = pp["_stack"] = stack["StackId"]
    try:
        with ctx.store.write() as conn:
            detail = _new_record(ctx, pp, "PROVISION_PRODUCT", tags, conn)
            pp["LastRecordId"] = pp["LastProvisioningRecordId"] = detail["RecordId"]
            ctx.backends.resources.create(
                account_id=ctx.account_id,
                region=ctx.region,
                kind=PROVISIONED,
                name=name,
                arn=pp["Arn"],
                data=pp,
                status="UNDER_CHANGE",
                conn=conn,
            )
            if tags:
                tag_store.add(conn, pp["Arn"], tags)
    except AlreadyExists:
        call(_cfn(ctx.account_id, ctx.region, ctx.backends), "DeleteStack", {"StackName": stack["StackId"]})
        raise _duplicate(name) from None
    reconciler.kick(ctx.backends, pp["Arn"])
    return {"RecordDetail": detail}


def _duplicate(name: str) -> AWSError:
    return AWSError("DuplicateResourceException", f"A provisioned product named {name} already exists.")


def _settled(record: Record) -> None:
    if record.status == "UNDER_CHANGE":
        raise AWSError(
            "InvalidStateException",
            f"Provisioned product {record.name} is UNDER_CHANGE; wait until its last request ends.",
        )


@operation(SERVICE, "UpdateProvisionedProduct")
def update_provisioned_product(ctx: Context, params: dict) -> dict:
    _refuse_unsupported(params)
    tags = params.get("Tags")
    record = _provisioned(ctx, params.get("ProvisionedProductName"), params.get("ProvisionedProductId"))
    _settled(record)
    pp = record.data
    product = catalog.product(ctx, params.get("ProductId") or pp["ProductId"], params.get("ProductName"))
    if params.get("ProvisioningArtifactId") or params.get("ProvisioningArtifactName"):
        entry = catalog.artifact(product, params.get("ProvisioningArtifactId"), params.get("ProvisioningArtifactName"))
    elif product.name == pp["ProductId"]:
        entry = catalog.artifact(product, pp["ProvisioningArtifactId"])
    else:
        entry = catalog.artifact(product)
    update = {
        "StackName": pp["_stack"],
        "TemplateBody": entry["_template"],
        "Capabilities": CAPABILITIES,
        "Parameters": _parameters(params.get("ProvisioningParameters")),
    }
    if tags is not None:
        update["Tags"] = tags
    # The stack's own operation runs outside this request's write (it writes the stack in its own); CloudFormation
    # refuses a second update while one is in progress, so two racing updates cannot both start.
    changed = True
    try:
        call(_cfn(ctx.account_id, ctx.region, ctx.backends), "UpdateStack", update)
    except AWSError as err:
        if "No updates are to be performed" not in err.message:
            raise invalid(err.message) from None
        changed = False
    with ctx.store.write() as conn:
        record = _provisioned(ctx, record.name, None, conn=conn, lock=True)
        pp = record.data
        pp.update(
            ProductId=product.name,
            ProvisioningArtifactId=entry["Id"],
            _product_name=product.data["Name"],
            _artifact_name=entry["Name"],
            _template=entry["_template"],
        )
        detail = _new_record(ctx, pp, "UPDATE_PROVISIONED_PRODUCT", tags or [], conn)
        pp["LastRecordId"] = pp["LastProvisioningRecordId"] = detail["RecordId"]
        if tags is not None:
            tag_store.remove(conn, record.arn, [t["Key"] for t in tag_store.read(conn, record.arn)])
            tag_store.add(conn, record.arn, tags)
        record.status = pp["Status"] = "UNDER_CHANGE"
        ctx.backends.resources.save(record, conn=conn)
    if not changed:  # nothing to do: the record succeeds at once
        _settle(ctx.backends, record, "AVAILABLE", None)
        detail = _record(ctx, detail["RecordId"])
    else:
        reconciler.kick(ctx.backends, record.arn)
    return {"RecordDetail": detail}


@operation(SERVICE, "TerminateProvisionedProduct")
def terminate_provisioned_product(ctx: Context, params: dict) -> dict:
    if params.get("RetainPhysicalResources"):
        raise invalid("RetainPhysicalResources is not supported by SelfMaker's Service Catalog.")
    record = _provisioned(ctx, params.get("ProvisionedProductName"), params.get("ProvisionedProductId"))
    if record.data.get("_terminating"):
        return {"RecordDetail": _record(ctx, record.data["LastRecordId"])}
    _settled(record)
    # DeleteStack writes the stack in its own transaction, so it is called before this request's write.
    call(_cfn(ctx.account_id, ctx.region, ctx.backends), "DeleteStack", {"StackName": record.data["_stack"]})
    with ctx.store.write() as conn:
        record = _provisioned(ctx, record.name, None, conn=conn, lock=True)
        if record.data.get("_terminating"):  # a concurrent Terminate landed first
            return {"RecordDetail": _record(ctx, record.data["LastRecordId"], conn=conn)}
        pp = record.data
        detail = _new_record(ctx, pp, "TERMINATE_PROVISIONED_PRODUCT", [], conn)
        pp["LastRecordId"] = detail["RecordId"]
        pp["_terminating"] = True
        pp["_ignore_errors"] = bool(params.get("IgnoreErrors"))
        record.status = pp["Status"] = "UNDER_CHANGE"
        ctx.backends.resources.save(record, conn=conn)
    reconciler.kick(ctx.backends, record.arn)
    return {"RecordDetail": detail}


@operation(SERVICE, "DescribeProvisionedProduct")
def describe_provisioned_product(ctx: Context, params: dict) -> dict:
    record = _provisioned(ctx, params.get("Name"), params.get("Id"))
    detail = {k: v for k, v in _view(record).items() if k not in ("PhysicalId",)}
    return {"ProvisionedProductDetail": detail, "CloudWatchDashboards": []}


def _attribute(ctx: Context, record: Record) -> dict:
    out = _view(record)
    out.update(ProductName=record.data["_product_name"], ProvisioningArtifactName=record.data["_artifact_name"])
    with ctx.store.read() as conn:
        out["Tags"] = tag_store.read(conn, record.arn)
    return out


def _mine(ctx: Context) -> list[Record]:
    return sorted(
        ctx.backends.resources.iterate(ctx.account_id, ctx.region, [PROVISIONED]), key=lambda r: (r.created_at, r.name)
    )


@operation(SERVICE, "ScanProvisionedProducts")
def scan_provisioned_products(ctx: Context, params: dict) -> dict:
    page, more = catalog._page(ctx, _mine(ctx), params, ["ScanProvisionedProducts"])
    return {"ProvisionedProducts": [{k: v for k, v in _view(r).items() if k != "PhysicalId"} for r in page], **more}


SEARCH_KEYS = {
    "name": "Name",
    "id": "Id",
    "arn": "Arn",
    "status": "Status",
    "productId": "ProductId",
    "provisioningArtifactId": "ProvisioningArtifactId",
    "type": "Type",
    "lastRecordId": "LastRecordId",
}


def _search_matches(attribute: dict, query: str) -> bool:
    """SearchQuery's words: ``key:value`` matches that attribute exactly, a bare word any attribute's text."""
    key, sep, value = query.partition(":")
    if sep and key in SEARCH_KEYS:
        return str(attribute.get(SEARCH_KEYS[key], "")) == value
    if sep and key.startswith("tags."):
        return any(t["Key"] == key[5:] and t["Value"] == value for t in attribute.get("Tags", []))
    return any(query.lower() in str(v).lower() for k, v in attribute.items() if k != "Tags")


@operation(SERVICE, "SearchProvisionedProducts")
def search_provisioned_products(ctx: Context, params: dict) -> dict:
    filters = params.get("Filters") or {}
    unknown = sorted(set(filters) - {"SearchQuery"})
    if unknown:
        raise invalid(f"Filter {unknown[0]} is not valid; use SearchQuery.")
    found = [
        a
        for a in (_attribute(ctx, r) for r in _mine(ctx))
        if all(_search_matches(a, q) for q in filters.get("SearchQuery", []))
    ]
    sort = {
        "name": "Name",
        "arn": "Arn",
        "id": "Id",
        "status": "Status",
        "createdTime": "CreatedTime",
        "lastRecordId": "LastRecordId",
    }.get(params.get("SortBy") or "createdTime")
    if sort is None:
        raise invalid(f"SortBy {params['SortBy']} is not valid.")
    found.sort(key=lambda a: a.get(sort) or "", reverse=params.get("SortOrder") == "DESCENDING")
    scope = ["SearchProvisionedProducts", filters, sort, params.get("SortOrder")]
    page, more = catalog._page(ctx, found, params, scope)
    return {"ProvisionedProducts": page, "TotalResultsCount": len(found), **more}


def _record(ctx: Context, record_id: str, conn=None) -> dict:
    found = ctx.backends.resources.get(ctx.account_id, ctx.region, RECORD, name=record_id, conn=conn)
    if found is None:
        raise not_found(f"Record {record_id} not found.")
    return {k: v for k, v in found.data.items() if not k.startswith("_")}


@operation(SERVICE, "DescribeRecord")
def describe_record(ctx: Context, params: dict) -> dict:
    found = ctx.backends.resources.get(ctx.account_id, ctx.region, RECORD, name=params["Id"])
    if found is None:
        raise not_found(f"Record {params['Id']} not found.")
    return {"RecordDetail": _record(ctx, params["Id"]), "RecordOutputs": found.data.get("_outputs", [])}


@operation(SERVICE, "GetProvisionedProductOutputs")
def get_provisioned_product_outputs(ctx: Context, params: dict) -> dict:
    record = _provisioned(ctx, params.get("ProvisionedProductName"), params.get("ProvisionedProductId"))
    outputs = _stack_outputs(ctx.backends, record)
    wanted = params.get("OutputKeys")
    return {"Outputs": [o for o in outputs if not wanted or o["OutputKey"] in wanted]}


# -- the controller: a provisioned product follows its stack ------------------------------------------------


def _stack(backends, record: Record) -> dict | None:
    try:
        stacks = call(
            _cfn(record.account_id, record.region, backends), "DescribeStacks", {"StackName": record.data["_stack"]}
        )["Stacks"]
    except AWSError:
        return None
    return stacks[0] if stacks else None


def _stack_outputs(backends, record: Record) -> list[dict]:
    stack = _stack(backends, record) or {}
    return [{k: o[k] for k in ("OutputKey", "OutputValue", "Description") if k in o} for o in stack.get("Outputs", [])]


def _failure(backends, record: Record, stack: dict) -> str:
    """The first resource failure of the stack's events, else the stack's own reason."""
    try:
        events = call(
            _cfn(record.account_id, record.region, backends),
            "DescribeStackEvents",
            {"StackName": record.data["_stack"]},
        )["StackEvents"]
    except AWSError:
        events = []
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("_FAILED") and e.get("ResourceStatusReason")]
    if failed:
        first = failed[-1]
        return f"{first['LogicalResourceId']}: {first['ResourceStatusReason']}"
    return stack.get("StackStatusReason") or stack["StackStatus"]


def _settle(backends, record: Record, status: str | None, message: str | None, outputs: list | None = None) -> None:
    """Write the provisioned product's end (``status`` None: terminated, the product is gone) and its record's."""
    record_id = record.data["LastRecordId"]
    succeeded = status == "AVAILABLE" or (status is None and message is None)

    def settle_record(found: Record, conn) -> None:
        found.data["Status"] = found.status = "SUCCEEDED" if succeeded else "FAILED"
        found.data["UpdatedTime"] = now()
        if message:
            found.data["RecordErrors"] = [{"Code": "StackFailed", "Description": message[:2000]}]
        if outputs is not None:
            found.data["_outputs"] = outputs

    backends.resources.mutate(
        settle_record, account_id=record.account_id, region=record.region, kind=RECORD, name=record_id, touch=False
    )
    if status is None:
        with backends.store.write() as conn:
            backends.resources.delete(record.arn, conn=conn)
        return

    def settle_product(found: Record, conn) -> None:
        found.status = found.data["Status"] = status
        found.data.pop("_terminating", None)
        if message:
            found.data["StatusMessage"] = message[:2000]
        else:
            found.data.pop("StatusMessage", None)
        if succeeded:
            found.data["LastSuccessfulProvisioningRecordId"] = record_id

    backends.resources.mutate(settle_product, arn=record.arn, touch=False)


def reconcile(backends, record: Record) -> float | None:
    stack = _stack(backends, record)
    terminating = record.data.get("_terminating")
    status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
    if status.endswith("_IN_PROGRESS"):
        return 1.0
    if terminating:
        if status == "DELETE_COMPLETE" or record.data.get("_ignore_errors"):
            _settle(backends, record, None, None)
        else:
            _settle(backends, record, "ERROR", _failure(backends, record, stack or {}))
        return None
    if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        _settle(backends, record, "AVAILABLE", None, _stack_outputs(backends, record))
    elif status == "UPDATE_ROLLBACK_COMPLETE":
        _settle(backends, record, "TAINTED", _failure(backends, record, stack or {}))
    else:  # ROLLBACK_COMPLETE, CREATE_FAILED, *_FAILED: the launch or update failed
        _settle(backends, record, "ERROR", _failure(backends, record, stack or {"StackStatus": status}))
    return None


CONTROLLER = reconciler.register(reconciler.Controller(kind=PROVISIONED, active=ACTIVE, reconcile=reconcile))
