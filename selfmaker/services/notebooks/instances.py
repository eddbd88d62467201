"""Notebook instances: the records and their operations (the controller in :mod:`.controller` runs them).

Statuses follow AWS: Create -> Pending -> InService; Stop -> Stopping -> Stopped; Start -> Pending;
Update (only when Stopped or Failed) -> Updating -> Stopped; Delete (only when Stopped or Failed) -> Deleting -> gone;
Failed with a FailureReason when JupyterLab cannot start or stops on its own.
"""

from __future__ import annotations

import time

from ...engines.reconciler import kick
from ...server.errors import validation
from ...server.operations import Context, operation
from ...store import schema
from ...store.resources import Record, now
from ..kinds import Kind
from . import proxy, repositories
from .lifecycle_configs import LIFECYCLE_CONFIG

R = schema.resources

# Members Describe answers with (the record keeps a few private ones, prefixed "_").
DESCRIBED = (
    "NotebookInstanceArn",
    "NotebookInstanceName",
    "NotebookInstanceStatus",
    "FailureReason",
    "Url",
    "InstanceType",
    "IpAddressType",
    "SubnetId",
    "SecurityGroups",
    "RoleArn",
    "KmsKeyId",
    "NetworkInterfaceId",
    "LastModifiedTime",
    "CreationTime",
    "NotebookInstanceLifecycleConfigName",
    "DirectInternetAccess",
    "VolumeSizeInGB",
    "AcceleratorTypes",
    "DefaultCodeRepository",
    "AdditionalCodeRepositories",
    "RootAccess",
    "PlatformIdentifier",
    "InstanceMetadataServiceConfiguration",
)
SUMMARY = (
    "NotebookInstanceName",
    "NotebookInstanceArn",
    "NotebookInstanceStatus",
    "Url",
    "InstanceType",
    "CreationTime",
    "LastModifiedTime",
    "NotebookInstanceLifecycleConfigName",
    "DefaultCodeRepository",
    "AdditionalCodeRepositories",
)
DEFAULT_PLATFORM = "notebook-al2023-v1"


def _check(ctx: Context, params: dict, data: dict) -> None:
    """What SelfMaker cannot honour is refused here, before anything is stored (docs/notebooks.md)."""
    if params.get("AcceleratorTypes"):
        raise validation("AcceleratorTypes (Elastic Inference) is not supported: Amazon EI is retired.")
    if params.get("LifecycleConfigName"):
        LIFECYCLE_CONFIG.load(ctx, params["LifecycleConfigName"])
    if params.get("InstanceType") and not params["InstanceType"].startswith("ml."):
        raise validation(f"Invalid InstanceType {params['InstanceType']!r}: notebook instance types start with ml.")
    if "IpAddressType" in params and params["IpAddressType"] != "ipv4":
        raise validation("IpAddressType dualstack needs a subnet with IPv6; SelfMaker instances have no subnet.")


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    _check(ctx, params, data)
    data.pop("LifecycleConfigName", None)
    if params.get("LifecycleConfigName"):
        data["NotebookInstanceLifecycleConfigName"] = params["LifecycleConfigName"]
    data.setdefault("DirectInternetAccess", "Enabled")
    data.setdefault("RootAccess", "Enabled")
    data.setdefault("VolumeSizeInGB", 5)
    data.setdefault("PlatformIdentifier", DEFAULT_PLATFORM)
    data.setdefault("IpAddressType", "ipv4")
    data.setdefault("InstanceMetadataServiceConfiguration", {"MinimumInstanceMetadataServiceVersion": "1"})
    if "SecurityGroupIds" in data:
        data["SecurityGroups"] = data.pop("SecurityGroupIds")
    data["NotebookInstanceStatus"] = "Pending"
    data["_OnCreateDone"] = False
    data["_Repositories"] = repositories.resolve(ctx, data)  # cloned at the first start (controller.py)
    _index(data)


def _index(data: dict) -> None:
    """Columns of the record's JSON the List filters match (AdditionalCodeRepositoryEquals is exact)."""
    data["_AdditionalRepos"] = "".join(f"|{r}|" for r in data.get("AdditionalCodeRepositories") or [])


def _on_update(ctx: Context, params: dict, record: Record) -> None:
    status = record.data["NotebookInstanceStatus"]
    if status not in ("Stopped", "Failed"):  # a Failed one is updated to fix it (e.g. its lifecycle config)
        raise validation(
            f"Status ({status}) not in ([Stopped, Failed]). Unable to update Notebook Instance {record.arn}."
        )
    _check(ctx, params, record.data)
    data = record.data
    for member in (
        "InstanceType",
        "IpAddressType",
        "PlatformIdentifier",
        "RoleArn",
        "VolumeSizeInGB",
        "RootAccess",
        "InstanceMetadataServiceConfiguration",
    ):
        if member in params:
            data[member] = params[member]
    if "VolumeSizeInGB" in params and params["VolumeSizeInGB"] < record.data.get("VolumeSizeInGB", 5):
        raise validation("VolumeSizeInGB can only grow: a notebook instance's volume is never shrunk.")
    if params.get("LifecycleConfigName"):
        data["NotebookInstanceLifecycleConfigName"] = params["LifecycleConfigName"]
    for member in ("DefaultCodeRepository", "AdditionalCodeRepositories"):
        if member in params:
            data[member] = params[member]
    for flag, member in (
        ("DisassociateLifecycleConfig", "NotebookInstanceLifecycleConfigName"),
        ("DisassociateAcceleratorTypes", "AcceleratorTypes"),
        ("DisassociateDefaultCodeRepository", "DefaultCodeRepository"),
        ("DisassociateAdditionalCodeRepositories", "AdditionalCodeRepositories"),
    ):
        if params.get(flag):
            data.pop(member, None)
    # Newly associated repositories are cloned at the next start; the volume keeps the others' clones.
    data["_Repositories"] = repositories.resolve(ctx, data)
    _index(data)
    data["NotebookInstanceStatus"] = "Updating"


def _present(ctx: Context, record: Record) -> dict:
    out = {k: record.data[k] for k in DESCRIBED if k in record.data}
    if out["NotebookInstanceStatus"] == "InService":
        out["Url"] = proxy.public_url(ctx, record)
    return out


def _summary(record: Record) -> dict:
    return {k: record.data[k] for k in SUMMARY if k in record.data}


def _filters(ctx: Context, params: dict) -> list:
    where = []
    if params.get("NotebookInstanceLifecycleConfigNameContains"):
        value = params["NotebookInstanceLifecycleConfigNameContains"]
        where.append(R.c.data["NotebookInstanceLifecycleConfigName"].as_string().contains(value, autoescape=True))
    if params.get("DefaultCodeRepositoryContains"):
        value = params["DefaultCodeRepositoryContains"]
        where.append(R.c.data["DefaultCodeRepository"].as_string().contains(value, autoescape=True))
    if params.get("AdditionalCodeRepositoryEquals"):
        value = f"|{params['AdditionalCodeRepositoryEquals']}|"
        where.append(R.c.data["_AdditionalRepos"].as_string().contains(value, autoescape=True))
    return where


def _kick(ctx: Context, arn: str) -> None:
    kick(ctx.backends, arn)


NOTEBOOK_INSTANCE = Kind(
    "NotebookInstance",
    "notebook-instance",
    label="notebook instance",
    operations=("Create", "Describe", "List", "Update"),  # Delete is below: it goes through Deleting
    status_member="NotebookInstanceStatus",
    not_found="RecordNotFound",
    exists="Cannot create a duplicate Notebook Instance ({arn})",
    on_create=_on_create,
    on_update=_on_update,
    after_create=_kick,
    after_update=_kick,
    present=_present,
    summarize=_summary,
    extra_filters=_filters,
).register()


def _move(ctx: Context, name: str, allowed: tuple[str, ...], to: str, verb: str, **extra) -> Record:
    """Move an instance from one of ``allowed`` statuses to ``to`` (the controller does the work)."""
    with ctx.store.write() as conn:
        record = NOTEBOOK_INSTANCE.load(ctx, name, conn=conn, lock=True)
        status = record.data["NotebookInstanceStatus"]
        if status not in allowed:
            raise validation(
                f"Status ({status}) not in ([{', '.join(allowed)}]). Unable to {verb} Notebook Instance {record.arn}."
            )
        record.data.update(NotebookInstanceStatus=to, LastModifiedTime=now(), **extra)
        record.data.pop("FailureReason", None)
        record.status = to
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return record


@operation("sagemaker", "StartNotebookInstance")
def start_notebook_instance(ctx: Context, params: dict) -> dict:
    _move(ctx, params["NotebookInstanceName"], ("Stopped", "Failed"), "Pending", "start", _StartedAt=None)
    return {}


@operation("sagemaker", "StopNotebookInstance")
def stop_notebook_instance(ctx: Context, params: dict) -> dict:
    _move(ctx, params["NotebookInstanceName"], ("InService", "Pending"), "Stopping", "stop")
    return {}


@operation("sagemaker", "DeleteNotebookInstance")
def delete_notebook_instance(ctx: Context, params: dict) -> dict:
    _move(ctx, params["NotebookInstanceName"], ("Stopped", "Failed"), "Deleting", "delete")
    return {}


@operation("sagemaker", "CreatePresignedNotebookInstanceUrl")
def create_presigned_url(ctx: Context, params: dict) -> dict:
    # Loaded in the caller's account: in strict mode only the owning account can mint a URL.
    record = NOTEBOOK_INSTANCE.load(ctx, params["NotebookInstanceName"])
    if record.data["NotebookInstanceStatus"] == "Deleting":
        raise validation(f"Notebook Instance {record.arn} is being deleted.")
    session = params.get("SessionExpirationDurationInSeconds") or proxy.DEFAULT_SESSION_SECONDS
    return {"AuthorizedUrl": proxy.presigned_url(ctx, record, session, time.time())}
