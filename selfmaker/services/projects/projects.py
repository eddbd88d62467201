"""SageMaker Projects: the Service Catalog portfolio switch, and projects provisioned through Service Catalog.

EnableSagemakerServicecatalogPortfolio puts SageMaker's portfolio ("Amazon SageMaker Solutions and ML Ops
products") and its built-in templates (templates.py) into the account's Service Catalog; CreateProject is
refused until it is enabled, as on AWS. A project is a record whose work is a reconciler step: ``Pending``
(ProvisionProduct, with the SageMakerProjectName/SageMakerProjectId parameters and the
``sagemaker:project-name``/``sagemaker:project-id`` tags that the stack then puts on what it makes) →
``CreateInProgress`` → ``CreateCompleted`` or ``CreateFailed``, following the provisioned product;
UpdateProject (UpdateProvisionedProduct) and DeleteProject (TerminateProvisionedProduct) likewise. A
deleted project also takes down the staging deployment its deploy step made (the models, endpoint configs and
endpoints tagged with its project id), which AWS leaves behind.
"""

from __future__ import annotations

import secrets
import string

from ...aws.servicecatalog import catalog
from ...engines import reconciler
from ...server.errors import AWSError, validation
from ...server.operations import Context, call, operation
from ...store.resources import AlreadyExists, Record, now
from .. import tagging
from ..kinds import Kind, actor
from . import templates

KIND = "Project"
PORTFOLIO_KIND = "SagemakerServicecatalogPortfolio"
ACTIVE = frozenset({"Pending", "CreateInProgress", "UpdateInProgress", "DeleteInProgress"})
PORTFOLIO_NAME = "Amazon SageMaker Solutions and ML Ops products"
PROVIDER = "Amazon SageMaker"
STUDIO_VISIBILITY = {"Key": "sagemaker:studio-visibility", "Value": "true"}
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _sc(ctx: Context) -> Context:
    return Context(
        backends=ctx.backends,
        account_id=ctx.account_id,
        region=ctx.region,
        service="servicecatalog",
        access_key=ctx.access_key,
    )


def _sm(record: Record, backends) -> Context:
    return Context(backends=backends, account_id=record.account_id, region=record.region, service="sagemaker")


# -- the portfolio switch ------------------------------------------------------------------------------------


def _portfolio_id(ctx: Context) -> str:
    return catalog.stable_id("port-", ctx.account_id, ctx.region, "sagemaker")


def _switch_arn(ctx: Context) -> str:
    return ctx.arn("sagemaker", "servicecatalog-portfolio/sagemaker")


def portfolio_enabled(ctx: Context) -> bool:
    record = ctx.backends.resources.get(ctx.account_id, ctx.region, PORTFOLIO_KIND, name="sagemaker")
    return record is not None and record.status == "Enabled"


def _set_switch(ctx: Context, status: str) -> None:
    def change(record: Record, conn) -> None:
        record.status = record.data["Status"] = status

    if (
        ctx.backends.resources.mutate(
            change, account_id=ctx.account_id, region=ctx.region, kind=PORTFOLIO_KIND, name="sagemaker"
        )
        is None
    ):
        try:
            ctx.backends.resources.create(
                account_id=ctx.account_id,
                region=ctx.region,
                kind=PORTFOLIO_KIND,
                name="sagemaker",
                arn=_switch_arn(ctx),
                data={"Status": status},
                status=status,
            )
        except AlreadyExists:  # a concurrent Enable/Disable made it: change it
            ctx.backends.resources.mutate(change, arn=_switch_arn(ctx))


@operation("sagemaker", "EnableSagemakerServicecatalogPortfolio")
def enable_portfolio(ctx: Context, params: dict) -> dict:
    sc = _sc(ctx)
    portfolio = catalog.ensure_portfolio(
        sc, _portfolio_id(ctx), PORTFOLIO_NAME, PROVIDER, "SageMaker's MLOps project templates (SelfMaker's built-in)"
    )
    for key, (name, description, template) in templates.BUILT_IN.items():
        body = _json(template())
        catalog.install_product(
            sc,
            portfolio.name,
            key,
            {"Name": name, "Owner": PROVIDER, "Description": description, "Distributor": PROVIDER},
            [("v1.0", description, body)],
            [STUDIO_VISIBILITY, {"Key": "sagemaker:template-key", "Value": key}],
        )
    _set_switch(ctx, "Enabled")
    return {}


def _json(document: dict) -> str:
    import json

    return json.dumps(document, indent=1)


@operation("sagemaker", "DisableSagemakerServicecatalogPortfolio")
def disable_portfolio(ctx: Context, params: dict) -> dict:
    catalog.remove_portfolio(_sc(ctx), _portfolio_id(ctx))
    _set_switch(ctx, "Disabled")
    return {}


@operation("sagemaker", "GetSagemakerServicecatalogPortfolioStatus")
def get_portfolio_status(ctx: Context, params: dict) -> dict:
    return {"Status": "Enabled" if portfolio_enabled(ctx) else "Disabled"}


# -- projects ------------------------------------------------------------------------------------------------


def _present(ctx: Context, record: Record) -> dict:
    return {k: v for k, v in record.data.items() if not k.startswith("_")}


def _summary(record: Record) -> dict:
    data = record.data
    return {
        k: data[k]
        for k in ("ProjectName", "ProjectDescription", "ProjectArn", "ProjectId", "CreationTime", "ProjectStatus")
        if k in data
    }


def _list_params(params: dict) -> dict:
    if params.get("ProjectType"):
        raise validation("ProjectType is not supported by SelfMaker: its projects are Service Catalog ones.")
    return params


PROJECT = Kind(
    KIND,
    "project",
    operations=("Describe", "List"),
    status_member="ProjectStatus",
    search_type="Project",
    not_found="Project {name} does not exist.",
    present=_present,
    summarize=_summary,
    list_params=_list_params,
).register()


def _project_tags(name: str, project_id: str) -> list[dict]:
    return [{"Key": "sagemaker:project-name", "Value": name}, {"Key": "sagemaker:project-id", "Value": project_id}]


@operation("sagemaker", "CreateProject")
def create_project(ctx: Context, params: dict) -> dict:
    for member in ("TemplateProviders", "ProjectConfig"):
        if params.get(member):
            raise validation(
                f"{member} is not supported by SelfMaker: a project is provisioned from a Service "
                "Catalog product (ServiceCatalogProvisioningDetails)."
            )
    details = params.get("ServiceCatalogProvisioningDetails")
    if not details:
        raise validation("ServiceCatalogProvisioningDetails is required.")
    if not portfolio_enabled(ctx):
        raise validation(
            "SageMaker project templates are not enabled for this account: call "
            "EnableSagemakerServicecatalogPortfolio first."
        )
    sc = _sc(ctx)
    try:  # the product and artifact must be launchable by the caller now, not fail later
        product = catalog.product(sc, details["ProductId"])
        entry = catalog.artifact(product, details.get("ProvisioningArtifactId"))
        if not catalog.launch_paths(sc, product):
            raise catalog.not_found(f"Product {product.name} is not in any portfolio of this account.")
        if details.get("PathId") and details["PathId"] not in {p["Id"] for p in catalog.launch_paths(sc, product)}:
            raise catalog.not_found(f"Launch path {details['PathId']} not found for product {product.name}.")
    except AWSError as err:
        raise validation(err.message) from None
    reserved = {"SageMakerProjectName", "SageMakerProjectId"} & {
        p["Key"] for p in details.get("ProvisioningParameters") or []
    }
    if reserved:
        raise validation(f"{sorted(reserved)[0]} is set by SageMaker and cannot be given.")
    for tag in params.get("Tags") or []:
        if tag["Key"].startswith(("sagemaker:", "aws:")):
            raise validation(f"Tag key {tag['Key']} uses a reserved prefix.")
    name = params["ProjectName"]
    project_id = "p-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    arn = PROJECT.arn(ctx, name)
    created = now()
    user = actor(ctx)
    data = {
        "ProjectArn": arn,
        "ProjectName": name,
        "ProjectId": project_id,
        "ServiceCatalogProvisioningDetails": {**details, "ProvisioningArtifactId": entry["Id"]},
        "ProjectStatus": "Pending",
        "CreatedBy": user,
        "CreationTime": created,
        "LastModifiedTime": created,
        "LastModifiedBy": user,
    }
    if params.get("ProjectDescription"):
        data["ProjectDescription"] = params["ProjectDescription"]
    try:
        with ctx.store.write() as conn:
            ctx.backends.resources.create(
                account_id=ctx.account_id,
                region=ctx.region,
                kind=KIND,
                name=name,
                arn=arn,
                data=data,
                status="Pending",
                created=created,
                conn=conn,
            )
            tagging.add(conn, arn, [*(params.get("Tags") or []), *_project_tags(name, project_id)])
    except AlreadyExists:
        raise validation(f"Project {name} already exists.") from None
    reconciler.kick(ctx.backends, arn)
    return {"ProjectArn": arn, "ProjectId": project_id}


_CHANGEABLE = ("CreateCompleted", "UpdateCompleted", "UpdateFailed")


@operation("sagemaker", "UpdateProject")
def update_project(ctx: Context, params: dict) -> dict:
    if params.get("TemplateProvidersToUpdate"):
        raise validation("TemplateProvidersToUpdate is not supported by SelfMaker.")
    for tag in params.get("Tags") or []:
        if tag["Key"].startswith(("sagemaker:", "aws:")):
            raise validation(f"Tag key {tag['Key']} uses a reserved prefix.")
    update = params.get("ServiceCatalogProvisioningUpdateDetails")
    with ctx.store.write() as conn:
        record = PROJECT.load(ctx, params["ProjectName"], conn=conn, lock=True)
        data = record.data
        if data["ProjectStatus"] not in _CHANGEABLE:
            raise AWSError(
                "ConflictException",
                f"Project {record.name} is {data['ProjectStatus']}: it can be updated once it is "
                f"{', '.join(_CHANGEABLE)}.",
            )
        if "ProjectDescription" in params:
            data["ProjectDescription"] = params["ProjectDescription"]
        if update is not None or params.get("Tags") is not None:
            if update and update.get("ProvisioningParameters"):
                reserved = {"SageMakerProjectName", "SageMakerProjectId"} & {
                    p["Key"] for p in update["ProvisioningParameters"]
                }
                if reserved:
                    raise validation(f"{sorted(reserved)[0]} is set by SageMaker and cannot be given.")
            data["_update"] = {"details": update or {}, "tags": params.get("Tags"), "token": catalog.new_id("u", 20)}
            data["ProjectStatus"] = record.status = "UpdateInProgress"
            if params.get("Tags") is not None:
                own = [t["Key"] for t in tagging.read(conn, record.arn) if not t["Key"].startswith("sagemaker:")]
                tagging.remove(conn, record.arn, own)
                tagging.add(conn, record.arn, params["Tags"])
        data["LastModifiedTime"] = record.modified_at = now()
        data["LastModifiedBy"] = actor(ctx)
        ctx.backends.resources.save(record, conn=conn, touch=False)
    reconciler.kick(ctx.backends, record.arn)
    return {"ProjectArn": record.arn}


@operation("sagemaker", "DeleteProject")
def delete_project(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = PROJECT.load(ctx, params["ProjectName"], conn=conn, lock=True)
        status = record.data["ProjectStatus"]
        if status == "DeleteInProgress":
            return {}
        if status in ("Pending", "CreateInProgress", "UpdateInProgress"):
            raise AWSError("ConflictException", f"Project {record.name} is {status}: it can be deleted once that ends.")
        record.data["ProjectStatus"] = record.status = "DeleteInProgress"
        ctx.backends.resources.save(record, conn=conn)
    reconciler.kick(ctx.backends, record.arn)
    return {}


# -- the controller ------------------------------------------------------------------------------------------


def _set(backends, record: Record, status: str, message: str | None = None, **changes) -> None:
    def change(found: Record, conn) -> bool:
        if found.data["ProjectStatus"] != record.data["ProjectStatus"]:
            return False  # moved on meanwhile (a Delete): the next step sees it
        found.data["ProjectStatus"] = found.status = status
        details = found.data.setdefault("ServiceCatalogProvisionedProductDetails", {})
        if message is not None:
            details["ProvisionedProductStatusMessage"] = message[:2000]
        for key, value in changes.items():
            if value is None:
                found.data.pop(key, None)
            else:
                found.data[key] = value
        return True

    backends.resources.mutate(change, arn=record.arn)


def _provisioned(backends, record: Record) -> dict | None:
    pp_id = record.data.get("ServiceCatalogProvisionedProductDetails", {}).get("ProvisionedProductId")
    if not pp_id:
        return None
    try:
        return call(_sc(_sm(record, backends)), "DescribeProvisionedProduct", {"Id": pp_id})["ProvisionedProductDetail"]
    except AWSError as err:
        if err.code == "ResourceNotFoundException":
            return None
        raise


def _provision(backends, record: Record) -> float | None:
    data = record.data
    ctx = _sm(record, backends)
    details = data["ServiceCatalogProvisioningDetails"]
    with backends.store.read() as conn:
        tags = tagging.read(conn, record.arn)
    request = {
        "ProductId": details["ProductId"],
        "ProvisioningArtifactId": details["ProvisioningArtifactId"],
        "ProvisionedProductName": f"SageMaker-{data['ProjectName']}-{data['ProjectId']}"[:128],
        "ProvisioningParameters": [
            *(details.get("ProvisioningParameters") or []),
            {"Key": "SageMakerProjectName", "Value": data["ProjectName"]},
            {"Key": "SageMakerProjectId", "Value": data["ProjectId"]},
        ],
        "ProvisionToken": data["ProjectId"],
        "Tags": tags,
    }
    if details.get("PathId"):
        request["PathId"] = details["PathId"]
    try:
        answer = call(_sc(ctx), "ProvisionProduct", request)["RecordDetail"]
    except AWSError as err:
        _set(backends, record, "CreateFailed", err.message)
        return None
    _set(
        backends,
        record,
        "CreateInProgress",
        ServiceCatalogProvisionedProductDetails={"ProvisionedProductId": answer["ProvisionedProductId"]},
    )
    return 1.0


def _follow(backends, record: Record, verb: str) -> float | None:
    pp = _provisioned(backends, record)
    if pp is None:
        _set(backends, record, f"{verb}Failed", "The provisioned product is gone.")
        return None
    if pp["Status"] in ("UNDER_CHANGE", "PLAN_IN_PROGRESS"):
        return 1.0
    if pp["Status"] == "AVAILABLE":
        _set(backends, record, f"{verb}Completed", _update=None)
    else:
        _set(backends, record, f"{verb}Failed", pp.get("StatusMessage") or pp["Status"], _update=None)
    return None


def _update(backends, record: Record) -> float | None:
    pending = record.data.get("_update")
    if pending and not pending.get("called"):
        pp_id = record.data["ServiceCatalogProvisionedProductDetails"]["ProvisionedProductId"]
        details = pending["details"]
        with backends.store.read() as conn:
            tags = tagging.read(conn, record.arn)
        request: dict = {"ProvisionedProductId": pp_id, "UpdateToken": pending["token"], "Tags": tags}
        if details.get("ProvisioningArtifactId"):
            request["ProvisioningArtifactId"] = details["ProvisioningArtifactId"]
        parameters = details.get("ProvisioningParameters")
        if parameters is not None:
            request["ProvisioningParameters"] = [
                *({"Key": p["Key"], "Value": p.get("Value", "")} for p in parameters),
                {"Key": "SageMakerProjectName", "UsePreviousValue": True},
                {"Key": "SageMakerProjectId", "UsePreviousValue": True},
            ]
        try:
            call(_sc(_sm(record, backends)), "UpdateProvisionedProduct", request)
        except AWSError as err:
            _set(backends, record, "UpdateFailed", err.message, _update=None)
            return None
        if details.get("ProvisioningArtifactId"):
            provisioning = {
                **record.data["ServiceCatalogProvisioningDetails"],
                "ProvisioningArtifactId": details["ProvisioningArtifactId"],
            }
        else:
            provisioning = record.data["ServiceCatalogProvisioningDetails"]
        _set(
            backends,
            record,
            "UpdateInProgress",
            _update={**pending, "called": True},
            ServiceCatalogProvisioningDetails=provisioning,
        )
        return 1.0
    return _follow(backends, record, "Update")


def _tear_down_deployments(backends, record: Record) -> None:
    """What the project's deploy step made outside its stack: its staging models, configs and endpoints."""
    ctx = _sm(record, backends)
    project_id = record.data["ProjectId"]
    for kind, operation_name, member in (
        ("Endpoint", "DeleteEndpoint", "EndpointName"),
        ("EndpointConfig", "DeleteEndpointConfig", "EndpointConfigName"),
        ("Model", "DeleteModel", "ModelName"),
    ):
        for resource in list(backends.resources.iterate(record.account_id, record.region, [kind])):
            with backends.store.read() as conn:
                tags = tagging.read_map(conn, resource.arn)
            if tags.get("sagemaker:project-id") != project_id:
                continue
            try:
                call(ctx, operation_name, {member: resource.name})
            except AWSError:
                pass  # gone meanwhile, or already being deleted


def _delete(backends, record: Record) -> float | None:
    pp = _provisioned(backends, record)
    if pp is None:
        _tear_down_deployments(backends, record)
        with backends.store.write() as conn:
            backends.resources.delete(record.arn, conn=conn)
        return None
    if pp["Status"] == "UNDER_CHANGE":
        return 1.0
    if record.data.get("_terminated"):  # terminated, and the product is still there: the stack's delete failed
        _set(backends, record, "DeleteFailed", pp.get("StatusMessage") or pp["Status"], _terminated=None)
        return None
    try:
        call(
            _sc(_sm(record, backends)),
            "TerminateProvisionedProduct",
            {"ProvisionedProductId": pp["Id"], "TerminateToken": record.data["ProjectId"]},
        )
    except AWSError as err:
        _set(backends, record, "DeleteFailed", err.message)
        return None
    _set(backends, record, "DeleteInProgress", _terminated=True)
    return 1.0


def reconcile(backends, record: Record) -> float | None:
    status = record.data["ProjectStatus"]
    if status == "Pending":
        return _provision(backends, record)
    if status == "CreateInProgress":
        return _follow(backends, record, "Create")
    if status == "UpdateInProgress":
        return _update(backends, record)
    if status == "DeleteInProgress":
        return _delete(backends, record)
    return None


CONTROLLER = reconciler.register(reconciler.Controller(kind=KIND, active=ACTIVE, reconcile=reconcile))
