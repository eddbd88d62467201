"""The model registry: model package groups, model packages (versioned or not), approval, group policies.

A versioned package lives in a group and is named ``<group>/<version>``; its
version is the group's counter plus one, taken in the same transaction as the
insert while holding the group's row (SELECT ... FOR UPDATE on PostgreSQL; the
store's write lock on SQLite), so concurrent registrations get 1, 2, 3... with
no gap and no duplicate. The counter only grows: a version number, and the ARN
made from it, never names two different models.

A group's resource policy (an IAM policy document) is what lets other accounts
describe, list or register versions in it; see :func:`authorize`. Bookkeeping
that no API returns lives in ``data`` under keys starting with ``_`` and is
stripped from every response.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from sqlalchemy import and_, func, or_, select

from ..aws.sts import caller_identity
from ..objects.access import check_s3_uri
from ..server.errors import AWSError, already_exists, conflict, validation
from ..server.operations import Context, operation
from ..store import schema
from ..store.resources import AlreadyExists, Record, now
from . import iam_policy, tagging
from .algorithms.resource import ALGORITHM
from .kinds import Kind, actor, list_query

R = schema.resources

POLICY = "_ResourcePolicy"  # group: the policy text, as put
LATEST_VERSION = "_LatestVersion"  # group: the highest version ever assigned
CLIENT_TOKEN = "_ClientToken"  # package: "<caller account>:<token>" of the creating request
REQUEST_DIGEST = "_RequestDigest"  # package: what that request asked for
LAST_UPDATE = "_LastUpdate"  # package: {"Token", "Digest"} of the last UpdateModelPackage with a ClientToken

# Operations on a group's versions as a whole: a policy may grant them on the group or on its versions.
_COLLECTION_OPERATIONS = ("CreateModelPackage", "ListModelPackages")


def public(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("_")}


# -- cross-account access ------------------------------------------------------------------------

_parse_policy = lru_cache(maxsize=256)(iam_policy.parse)


def caller_arn(ctx: Context) -> str:
    """The caller as IAM names it: the credentials file's user, else the account's root."""
    return caller_identity(ctx)[0]


def versions_arn(group: Record) -> str:
    """The ARN pattern of every version in ``group`` (what AWS's examples grant CreateModelPackage on)."""
    return group.arn.replace(":model-package-group/", ":model-package/", 1) + "/*"


def authorize(ctx: Context, group: Record, resources: tuple[str, ...]) -> None:
    """Let another account's caller act on ``group`` (or its versions) only where the group's policy allows it.

    The action is the operation being served; an explicit Deny wins over any Allow.
    Callers in the group's own account are governed by their identity, not by this policy.
    """
    if group.account_id == ctx.account_id:
        return
    action = f"sagemaker:{ctx.operation}"
    principal = caller_arn(ctx)
    text = group.data.get(POLICY)
    request = iam_policy.Request(
        account_id=ctx.account_id, principal_arn=principal, action=action, resources=resources, region=ctx.region
    )
    decision = _parse_policy(text).decide(request) if text else None
    if decision == "Allow":
        return
    reason = (
        "with an explicit deny in a resource-based policy"
        if decision == "Deny"
        else f"because no resource-based policy allows the {action} action"
    )
    raise AWSError(
        "AccessDeniedException",
        f"User: {principal} is not authorized to perform: {action} on resource: {resources[0]} {reason}",
    )


def _group_access(ctx: Context, group: Record) -> None:
    resources = (group.arn, versions_arn(group)) if ctx.operation in _COLLECTION_OPERATIONS else (group.arn,)
    authorize(ctx, group, resources)


def _package_access(ctx: Context, package: Record) -> None:
    group = ctx.backends.resources.get_by_arn(package.parent) if package.parent else None
    if group is None:  # unversioned packages have no policy to share them by
        raise AWSError(
            "AccessDeniedException",
            f"User: {caller_arn(ctx)} is not authorized to perform: sagemaker:{ctx.operation} "
            f"on resource: {package.arn} because no resource-based policy allows it",
        )
    authorize(ctx, group, (package.arn,))


def _locked(ctx: Context, kind: Kind, record: Record, conn) -> Record:
    """``record`` re-read under its row lock, held until the transaction ends.

    PostgreSQL takes the lock (SELECT ... FOR UPDATE); on SQLite the store's write lock
    already serializes writers and SQLAlchemy renders no FOR UPDATE.
    """
    row = conn.execute(select(R.c.data, R.c.status).where(R.c.id == record.id).with_for_update()).first()
    if row is None:  # deleted since it was read
        raise kind.missing(ctx, record.name)
    record.data, record.status = dict(row.data), row.status
    return record


# -- model package groups ------------------------------------------------------------------------


def _create_group(ctx: Context, params: dict, data: dict) -> None:
    data["ModelPackageGroupStatus"] = "Completed"


def _delete_group(ctx: Context, group: Record, conn) -> None:
    _locked(ctx, MODEL_PACKAGE_GROUP, group, conn)  # no version can be registered while we look
    versions = conn.execute(
        select(func.count()).select_from(R).where(R.c.kind == MODEL_PACKAGE.name, R.c.parent == group.arn)
    ).scalar_one()
    if versions:
        raise conflict(
            f"Model Package Group {group.arn} cannot be deleted because it still contains "
            f"Model Packages ({versions}). Delete them first."
        )


def _group_summary(record: Record) -> dict:
    return public(record.data)


MODEL_PACKAGE_GROUP = Kind(
    "ModelPackageGroup",
    "model-package-group",
    label="model package group",
    operations=("Create", "Describe", "Delete"),
    search_type="ModelPackageGroup",
    status_member="ModelPackageGroupStatus",
    on_create=_create_group,
    on_delete=_delete_group,
    track_actor=True,
    present=lambda ctx, record: public(record.data),
    summarize=_group_summary,
    shared_access=_group_access,
    not_found="ModelPackageGroup {name} does not exist.",
    exists="Model Package Group already exists: {arn}",
).register()


@operation("sagemaker", "ListModelPackageGroups")
def list_model_package_groups(ctx: Context, params: dict) -> dict:
    # AWS documents Ascending as this list's default order.
    params = {**params, "SortOrder": params.get("SortOrder") or "Ascending"}
    if params.get("CrossAccountFilterOption") == "CrossAccount":
        return _shared_groups(ctx, params)
    records, token = ctx.backends.resources.list(
        ctx.account_id, ctx.region, MODEL_PACKAGE_GROUP.name, list_query(params)
    )
    return {"ModelPackageGroupSummaryList": [_group_summary(r) for r in records], "NextToken": token}


def _shared_groups(ctx: Context, params: dict) -> dict:
    """Other accounts' groups whose policy lets the caller describe them (AWS: "discoverable")."""
    query = list_query(params)
    cond = [
        R.c.kind == MODEL_PACKAGE_GROUP.name,
        R.c.region == ctx.region,
        R.c.account_id != ctx.account_id,
        R.c.data[POLICY].as_string().isnot(None),
    ]
    if query.created_after is not None:
        cond.append(R.c.created_at > query.created_after)
    if query.created_before is not None:
        cond.append(R.c.created_at < query.created_before)
    with ctx.store.read() as conn:
        rows = conn.execute(select(R.c.id, R.c.arn, R.c.name, R.c.created_at, R.c.data).where(*cond)).all()
    needle = (query.name_contains or "").lower()
    visible = []
    for row in rows:
        if needle not in row.name.lower():
            continue
        request = iam_policy.Request(
            account_id=ctx.account_id,
            principal_arn=caller_arn(ctx),
            action="sagemaker:DescribeModelPackageGroup",
            resources=(row.arn,),
            region=ctx.region,
        )
        if _parse_policy(row.data[POLICY]).decide(request) == "Allow":
            visible.append(row)
    key = (lambda r: (r.name.lower(), r.id)) if query.sort_by == "Name" else (lambda r: (r.created_at, r.id))
    visible.sort(key=key, reverse=query.descending)

    fingerprint = [
        "shared-groups",
        ctx.account_id,
        ctx.region,
        needle,
        query.created_after,
        query.created_before,
        query.sort_by,
        query.descending,
    ]
    offset = 0
    if query.next_token:
        offset = ctx.backends.resources.read_page_token(query.next_token, fingerprint)["o"]
    page = visible[offset : offset + query.max_results]
    result = {"ModelPackageGroupSummaryList": [public(r.data) for r in page]}
    if offset + query.max_results < len(visible):
        result["NextToken"] = ctx.backends.resources.page_token(fingerprint, o=offset + query.max_results)
    return result


# -- group policies ------------------------------------------------------------------------------


def _own_group(ctx: Context, name: str, conn) -> Record:
    group = ctx.backends.resources.get(ctx.account_id, ctx.region, MODEL_PACKAGE_GROUP.name, name=name, conn=conn)
    if group is None:
        raise validation(f"Cannot find Model Package Group {MODEL_PACKAGE_GROUP.arn(ctx, name)}.")
    return group


def _no_policy(group: Record) -> AWSError:
    return validation(f"Cannot find resource policy for Model Package Group {group.arn}.")


@operation("sagemaker", "PutModelPackageGroupPolicy")
def put_model_package_group_policy(ctx: Context, params: dict) -> dict:
    text = params["ResourcePolicy"]
    try:
        _parse_policy(text)
    except iam_policy.PolicyError as err:
        raise validation(f"The ResourcePolicy is not a valid policy document. {err}") from None
    with ctx.store.write() as conn:
        group = _locked(ctx, MODEL_PACKAGE_GROUP, _own_group(ctx, params["ModelPackageGroupName"], conn), conn)
        group.data[POLICY] = text
        ctx.backends.resources.save(group, conn=conn, touch=False)
    return {"ModelPackageGroupArn": group.arn}


@operation("sagemaker", "GetModelPackageGroupPolicy")
def get_model_package_group_policy(ctx: Context, params: dict) -> dict:
    with ctx.store.read() as conn:
        group = _own_group(ctx, params["ModelPackageGroupName"], conn)
    if POLICY not in group.data:
        raise _no_policy(group)
    return {"ResourcePolicy": group.data[POLICY]}


@operation("sagemaker", "DeleteModelPackageGroupPolicy")
def delete_model_package_group_policy(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        group = _locked(ctx, MODEL_PACKAGE_GROUP, _own_group(ctx, params["ModelPackageGroupName"], conn), conn)
        if POLICY not in group.data:
            raise _no_policy(group)
        del group.data[POLICY]
        ctx.backends.resources.save(group, conn=conn, touch=False)
    return {}


# -- model packages ------------------------------------------------------------------------------

MODEL_PACKAGE = Kind(
    "ModelPackage",
    "model-package",
    label="model package",
    operations=("Describe", "Delete"),
    search_type="ModelPackage",
    present=lambda ctx, record: public(record.data),
    shared_access=_package_access,
    not_found="ModelPackage {arn} does not exist.",
    exists="ModelPackage {arn} already exists.",
).register()


def _digest(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def _replay(ctx: Context, token: str, owner: str, region: str, digest: str, conn) -> str | None:
    """The ARN an earlier CreateModelPackage with this ClientToken made (same request), or None."""
    row = conn.execute(
        select(R.c.arn, R.c.data[REQUEST_DIGEST].as_string().label("digest")).where(
            R.c.kind == MODEL_PACKAGE.name,
            R.c.account_id == owner,
            R.c.region == region,
            R.c.data[CLIENT_TOKEN].as_string() == f"{ctx.account_id}:{token}",
        )
    ).first()
    if row is None:
        return None
    if row.digest != digest:
        raise conflict(f"ClientToken {token} was already used to create {row.arn} with different parameters.")
    return row.arn


def _validation_statuses(params: dict) -> list[dict]:
    # Validation transform jobs are not run yet: each profile reports NotStarted rather than a result.
    profiles = (params.get("ValidationSpecification") or {}).get("ValidationProfiles", [])
    return [{"Name": p["ProfileName"], "Status": "NotStarted"} for p in profiles]


def _check_additional_specifications(specs: list[dict]) -> None:
    if len(specs) > 15:
        raise validation("A model package can have at most 15 AdditionalInferenceSpecifications.")
    names = [s["Name"] for s in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise validation(f"AdditionalInferenceSpecifications names must be unique: {duplicate} is repeated.")


def _check_source_algorithms(ctx: Context, spec: dict | None) -> None:
    """The algorithms a package was trained by are the caller's own, and their model data the caller's to read."""
    for i, source in enumerate((spec or {}).get("SourceAlgorithms", [])):
        ALGORITHM.load(ctx, source["AlgorithmName"])
        uri = source.get("ModelDataUrl") or ((source.get("ModelDataSource") or {}).get("S3DataSource") or {}).get(
            "S3Uri"
        )
        if uri:
            try:
                check_s3_uri(ctx.backends, ctx.account_id, uri, f"SourceAlgorithms[{i}]")
            except AWSError as err:
                raise validation(f"Could not access model data at {uri}. {err.message}") from None


@operation("sagemaker", "CreateModelPackage")
def create_model_package(ctx: Context, params: dict) -> dict:
    group_ref, name = params.get("ModelPackageGroupName"), params.get("ModelPackageName")
    if group_ref and name:
        raise validation(
            "Both ModelPackageName and ModelPackageGroupName are provided in the input. "
            "Give ModelPackageGroupName for a versioned model package, ModelPackageName for an "
            "unversioned one."
        )
    if not group_ref and not name:  # AWS's own words for this case
        raise validation("Missing ARN.")
    _check_additional_specifications(params.get("AdditionalInferenceSpecifications", []))
    _check_source_algorithms(ctx, params.get("SourceAlgorithmSpecification"))
    created = now()
    data = {k: v for k, v in params.items() if k not in ("Tags", "ClientToken", "ModelPackageGroupName")}
    data.update(
        {
            "CreationTime": created,
            "LastModifiedTime": created,
            "CreatedBy": actor(ctx),
            "LastModifiedBy": actor(ctx),
            # Nothing runs between registration and use, so a package is complete once it is stored.
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": _validation_statuses(params)},
        }
    )
    if group_ref:
        if params.get("CertifyForMarketplace"):
            raise validation("CertifyForMarketplace applies only to unversioned model packages.")
        return _create_version(ctx, params, group_ref, data)
    if not (params.get("InferenceSpecification") or params.get("SourceAlgorithmSpecification")):
        raise validation(
            "An unversioned model package needs an InferenceSpecification or a SourceAlgorithmSpecification."
        )
    return _create_unversioned(ctx, params, name, data)


def _create_version(ctx: Context, params: dict, group_ref: str, data: dict) -> dict:
    token = params.get("ClientToken")
    with ctx.store.write() as conn:
        group = MODEL_PACKAGE_GROUP.load(ctx, group_ref, conn=conn)
        group = _locked(ctx, MODEL_PACKAGE_GROUP, group, conn)
        digest = _digest({**params, "ModelPackageGroupName": group.arn, "ClientToken": None})
        if token and (arn := _replay(ctx, token, group.account_id, group.region, digest, conn)):
            return {"ModelPackageArn": arn}
        # Stamped under the lock, so versions are created (and listed) in version order.
        data["CreationTime"] = data["LastModifiedTime"] = now()
        version = group.data.get(LATEST_VERSION, 0) + 1
        group.data[LATEST_VERSION] = version
        ctx.backends.resources.save(group, conn=conn, touch=False)

        group_name = group.data["ModelPackageGroupName"]
        arn = ctx.arn(
            "sagemaker", f"model-package/{group_name.lower()}/{version}", region=group.region, account=group.account_id
        )
        data.update(
            {
                "ModelPackageName": group_name,
                "ModelPackageGroupName": group_name,
                "ModelPackageVersion": version,
                "ModelPackageArn": arn,
                "ModelApprovalStatus": params.get("ModelApprovalStatus") or "PendingManualApproval",
            }
        )
        if token:
            data.update({CLIENT_TOKEN: f"{ctx.account_id}:{token}", REQUEST_DIGEST: digest})
        ctx.backends.resources.create(
            account_id=group.account_id,
            region=group.region,
            kind=MODEL_PACKAGE.name,
            name=f"{group_name}/{version}",
            arn=arn,
            data=data,
            status=data["ModelApprovalStatus"],
            parent=group.arn,
            created=data["CreationTime"],
            conn=conn,
        )
        if params.get("Tags"):
            tagging.add(conn, arn, params["Tags"])
    return {"ModelPackageArn": arn}


def _create_unversioned(ctx: Context, params: dict, name: str, data: dict) -> dict:
    token = params.get("ClientToken")
    digest = _digest({**params, "ClientToken": None})
    arn = MODEL_PACKAGE.arn(ctx, name)
    data["ModelPackageArn"] = arn
    if token:
        data.update({CLIENT_TOKEN: f"{ctx.account_id}:{token}", REQUEST_DIGEST: digest})
    try:
        with ctx.store.write() as conn:
            if token and (earlier := _replay(ctx, token, ctx.account_id, ctx.region, digest, conn)):
                return {"ModelPackageArn": earlier}
            ctx.backends.resources.create(
                account_id=ctx.account_id,
                region=ctx.region,
                kind=MODEL_PACKAGE.name,
                name=name,
                arn=arn,
                data=data,
                status=params.get("ModelApprovalStatus"),
                created=data["CreationTime"],
                conn=conn,
            )
            if params.get("Tags"):
                tagging.add(conn, arn, params["Tags"])
    except AlreadyExists:
        # A concurrent retry of the same request may have won the insert (PostgreSQL has no write lock).
        with ctx.store.read() as conn:
            if token and (earlier := _replay(ctx, token, ctx.account_id, ctx.region, digest, conn)):
                return {"ModelPackageArn": earlier}
        raise already_exists(
            MODEL_PACKAGE.exists_code, MODEL_PACKAGE.message(MODEL_PACKAGE.exists, ctx, name)
        ) from None
    return {"ModelPackageArn": arn}


@operation("sagemaker", "UpdateModelPackage")
def update_model_package(ctx: Context, params: dict) -> dict:
    token = params.get("ClientToken")
    digest = _digest({**params, "ClientToken": None})
    with ctx.store.write() as conn:
        package = MODEL_PACKAGE.load(ctx, params["ModelPackageArn"], conn=conn)
        package = _locked(ctx, MODEL_PACKAGE, package, conn)
        data = package.data
        if package.parent is None:
            raise validation(f"UpdateModelPackage applies to versioned model packages; {package.arn} is unversioned.")
        if token and data.get(LAST_UPDATE, {}).get("Token") == token:
            if data[LAST_UPDATE]["Digest"] != digest:
                raise conflict(
                    f"ClientToken {token} was already used to update {package.arn} with different parameters."
                )
            return {"ModelPackageArn": package.arn}
        _apply_update(params, data)
        data["LastModifiedTime"] = package.modified_at = now()
        data["LastModifiedBy"] = actor(ctx)
        if token:
            data[LAST_UPDATE] = {"Token": token, "Digest": digest}
        package.status = data.get("ModelApprovalStatus")
        ctx.backends.resources.save(package, conn=conn, touch=False)
    return {"ModelPackageArn": package.arn}


def _apply_update(params: dict, data: dict) -> None:
    for member in (
        "ModelApprovalStatus",
        "ApprovalDescription",
        "ModelPackageRegistrationType",
        "InferenceSpecification",
        "SourceUri",
        "ModelCard",
        "ModelLifeCycle",
    ):
        if member in params:
            data[member] = params[member]
    to_remove = params.get("CustomerMetadataPropertiesToRemove", [])
    both = sorted(set(to_remove) & set(params.get("CustomerMetadataProperties", {})))
    if both:
        raise validation(f"CustomerMetadataProperties and CustomerMetadataPropertiesToRemove both name {both[0]}.")
    if "CustomerMetadataProperties" in params or to_remove:
        merged = {**data.get("CustomerMetadataProperties", {}), **params.get("CustomerMetadataProperties", {})}
        for key in to_remove:
            merged.pop(key, None)
        if merged:
            data["CustomerMetadataProperties"] = merged
        else:
            data.pop("CustomerMetadataProperties", None)
    if params.get("AdditionalInferenceSpecificationsToAdd"):
        specs = data.get("AdditionalInferenceSpecifications", []) + params["AdditionalInferenceSpecificationsToAdd"]
        _check_additional_specifications(specs)
        data["AdditionalInferenceSpecifications"] = specs


def _name_contains(needle: str):
    """NameContains on ModelPackageName: a version's record name is "<group>/<n>", so match before the "/"."""
    pattern = needle.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(
        and_(R.c.parent.is_(None), R.c.name_key.like(f"%{pattern}%", escape="\\")),
        and_(R.c.parent.isnot(None), R.c.name_key.like(f"%{pattern}%/%", escape="\\")),
    )


@operation("sagemaker", "ListModelPackages")
def list_model_packages(ctx: Context, params: dict) -> dict:
    empty = {"ModelPackageSummaryList": []}
    # AWS documents Ascending as this list's default order.
    query = list_query({**params, "SortOrder": params.get("SortOrder") or "Ascending"})
    query.name_contains = None
    if params.get("NameContains"):
        query.where.append(_name_contains(params["NameContains"]))
    query.status = params.get("ModelApprovalStatus")
    group_ref = params.get("ModelPackageGroupName")
    # Unversioned is AWS's default type, except that naming a group asks for its versions.
    package_type = params.get("ModelPackageType") or ("Versioned" if group_ref else "Unversioned")
    owner, region = ctx.account_id, ctx.region
    if group_ref:
        try:
            group = MODEL_PACKAGE_GROUP.load(ctx, group_ref)
        except AWSError as err:
            if err.code == "AccessDeniedException":
                raise
            return empty  # a filter naming no group matches nothing
        if package_type == "Unversioned":
            return empty
        query.parent, owner, region = group.arn, group.account_id, group.region
    elif package_type == "Versioned":
        query.where.append(R.c.parent.isnot(None))
    elif package_type == "Unversioned":
        query.where.append(R.c.parent.is_(None))
    records, token = ctx.backends.resources.list(owner, region, MODEL_PACKAGE.name, query)
    return {"ModelPackageSummaryList": [_package_summary(r) for r in records], "NextToken": token}


def _package_summary(record: Record) -> dict:
    summary = public(record.data)
    if record.parent:  # AWS lists a version by group and number, without a ModelPackageName
        summary.pop("ModelPackageName", None)
    return summary


@operation("sagemaker", "BatchDescribeModelPackage")
def batch_describe_model_package(ctx: Context, params: dict) -> dict:
    summaries, errors = {}, {}
    for arn in dict.fromkeys(params["ModelPackageArnList"]):
        try:
            package = MODEL_PACKAGE.load(ctx, arn)
        except AWSError as err:
            errors[arn] = {"ErrorCode": err.code, "ErrorResponse": err.message}
            continue
        if package.parent is None:
            errors[arn] = {
                "ErrorCode": "ValidationException",
                "ErrorResponse": f"{arn} is an unversioned model package; BatchDescribeModelPackage "
                "describes versions in model package groups.",
            }
        elif "InferenceSpecification" not in package.data:
            errors[arn] = {
                "ErrorCode": "ValidationException",
                "ErrorResponse": f"{arn} has no InferenceSpecification to summarize.",
            }
        else:
            summaries[arn] = public(package.data)
    return {"ModelPackageSummaries": summaries, "BatchDescribeModelPackageErrorMap": errors}
