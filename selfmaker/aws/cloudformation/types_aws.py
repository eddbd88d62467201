"""AWS::S3::Bucket, AWS::SQS::Queue and AWS::IAM::Role.

A bucket is made in SelfMaker's object store and owned by the stack's account (as CreateBucket does); a queue
through SelfMaker's SQS operations. IAM roles are recorded only: SelfMaker models no IAM roles and enforces no
IAM policies (see aws/iam.py), so a role resource has the ARN and RoleId GetRole reports for its name, and
nothing else happens; the stack still needs CAPABILITY_IAM (CAPABILITY_NAMED_IAM with a RoleName), as on AWS.
"""

from __future__ import annotations

import json
import re

from ...objects.base import check_bucket_name
from ...objects.ownership import BucketOwners
from ...server.errors import AWSError
from ..iam import role_id
from .resource_types import Action, ResourceFailed, ResourceType, not_found

# -- S3 ---------------------------------------------------------------------------------------------------


def _owners(action: Action) -> BucketOwners:
    settings = action.backends.settings
    return BucketOwners(action.backends.store, settings.default_account, settings.region)


def _bucket_attributes(action: Action, bucket: str) -> None:
    action.physical_id = bucket
    action.attributes.update(
        Arn=f"arn:aws:s3:::{bucket}",
        DomainName=f"{bucket}.s3.amazonaws.com",
        RegionalDomainName=f"{bucket}.s3.{action.region}.amazonaws.com",
        DualStackDomainName=f"{bucket}.s3.dualstack.{action.region}.amazonaws.com",
        WebsiteURL=f"http://{bucket}.s3-website-{action.region}.amazonaws.com",
    )


def _create_bucket(action: Action) -> bool:
    bucket = action.state.setdefault("name", action.name("BucketName", 63, lower=True))
    try:
        check_bucket_name(bucket)
    except AWSError as err:
        action.state.pop("name")
        raise ResourceFailed(f"Bucket name {bucket} is not valid: {err.message}") from None
    try:
        action.backends.objects.create_bucket(bucket)
    except AWSError as err:
        if err.code != "BucketAlreadyExists":
            raise
        # Ours only when a crashed earlier attempt made it (and recorded it to this account).
        mine = _owners(action).of(bucket).account_id == action.account_id
        if not (mine and action.state.get("attempts", 0) > 1):
            action.state.pop("name")  # not the stack's: a rollback must leave it alone
            raise ResourceFailed(f"{bucket} already exists") from None
    _owners(action).record(bucket, action.account_id, action.region)
    _bucket_attributes(action, bucket)
    return True


def _delete_bucket(action: Action) -> bool:
    bucket = action.physical_id or action.state["name"]
    owners = _owners(action)
    try:
        action.backends.objects.head_bucket(bucket)
    except AWSError as err:
        if not_found(err):
            return True
        raise
    if owners.of(bucket).account_id != action.account_id:
        raise ResourceFailed(f"Access Denied: the bucket {bucket} belongs to another account")
    try:
        action.backends.objects.delete_bucket(bucket)
    except AWSError as err:
        if not_found(err):
            return True
        raise ResourceFailed(
            f"{err.message} (Service: S3, Status Code: {err.status}, Error Code: {err.code})"
        ) from None
    owners.forget(bucket)
    return True


BUCKET = ResourceType(
    name="AWS::S3::Bucket",
    create=_create_bucket,
    delete=_delete_bucket,
    attributes=frozenset({"Arn", "DomainName", "RegionalDomainName", "DualStackDomainName", "WebsiteURL"}),
    name_property="BucketName",
    properties=frozenset({"BucketName"}),
    description="a bucket in SelfMaker's object store (BucketName only); deleting a non-empty bucket fails",
).register()


# -- SQS --------------------------------------------------------------------------------------------------

QUEUE_ATTRIBUTES = {
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "Policy",
}


def _queue_attributes(properties: dict) -> dict:
    out = {}
    for key in QUEUE_ATTRIBUTES & set(properties):
        value = properties[key]
        if isinstance(value, dict | list):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = str(value)
    return out


def _queue_tags(action: Action) -> dict:
    tags = {t["Key"]: t["Value"] for t in action.stack_tags}
    tags.update({t["Key"]: t["Value"] for t in action.properties.get("Tags") or []})
    return tags


def _queue_done(action: Action, url: str) -> bool:
    name = action.state["name"]
    action.physical_id = url
    action.attributes.update(
        Arn=f"arn:aws:sqs:{action.region}:{action.account_id}:{name}", QueueName=name, QueueUrl=url
    )
    return True


def _create_queue(action: Action) -> bool:
    if action.properties.get("FifoQueue") in (True, "true"):
        raise ResourceFailed("FifoQueue: SelfMaker's SQS serves standard queues only")
    name = action.state.setdefault("name", action.name("QueueName", 80))
    if action.state.get("attempts", 0) <= 1:
        try:
            action.call("sqs", "GetQueueUrl", {"QueueName": name})
        except AWSError as err:
            if not not_found(err):
                raise
        else:
            action.state.pop("name")  # not the stack's: a rollback must leave it alone
            raise ResourceFailed(f"{name} already exists")
    params = {"QueueName": name, "Attributes": _queue_attributes(action.properties)}
    if tags := _queue_tags(action):
        params["tags"] = tags
    return _queue_done(action, action.call("sqs", "CreateQueue", params)["QueueUrl"])


def _update_queue(action: Action) -> bool:
    url = action.physical_id or ""
    attributes = _queue_attributes(action.properties)
    for key in _queue_attributes(action.previous or {}):
        attributes.setdefault(key, "" if key in ("RedrivePolicy", "RedriveAllowPolicy", "Policy") else None)
    defaults = {"DelaySeconds": "0", "MaximumMessageSize": "262144", "MessageRetentionPeriod": "345600"}
    defaults.update(ReceiveMessageWaitTimeSeconds="0", VisibilityTimeout="30")
    attributes = {k: (defaults.get(k, "") if v is None else v) for k, v in attributes.items()}
    if attributes:
        action.call("sqs", "SetQueueAttributes", {"QueueUrl": url, "Attributes": attributes})
    old = {t["Key"] for t in (action.previous or {}).get("Tags") or []}
    new = {t["Key"]: t["Value"] for t in action.properties.get("Tags") or []}
    if gone := sorted(old - set(new)):
        action.call("sqs", "UntagQueue", {"QueueUrl": url, "TagKeys": gone})
    if new:
        action.call("sqs", "TagQueue", {"QueueUrl": url, "Tags": new})
    return _queue_done(action, url)


def _delete_queue(action: Action) -> bool:
    try:
        action.call("sqs", "DeleteQueue", {"QueueUrl": action.physical_id})
    except AWSError as err:
        if not not_found(err):
            raise
    return True


QUEUE = ResourceType(
    name="AWS::SQS::Queue",
    create=_create_queue,
    delete=_delete_queue,
    update=_update_queue,
    updatable=frozenset(QUEUE_ATTRIBUTES | {"Tags"}),
    attributes=frozenset({"Arn", "QueueName", "QueueUrl"}),
    name_property="QueueName",
    properties=frozenset(QUEUE_ATTRIBUTES | {"QueueName", "Tags", "FifoQueue", "ContentBasedDeduplication"}),
    description="a standard queue of SelfMaker's SQS; Ref is its URL; attributes and tags update in place",
).register()


# -- IAM (recorded) ----------------------------------------------------------------------------------------

ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
ROLE_PATH = re.compile(r"/|/[\x21-\x7e]{0,510}/")


def _record_role(action: Action) -> bool:
    if "AssumeRolePolicyDocument" not in action.properties:
        raise ResourceFailed("Property AssumeRolePolicyDocument cannot be empty.")
    name = action.state.setdefault("name", action.name("RoleName", 64))
    path = str(action.properties.get("Path", "/"))
    if not ROLE_NAME.fullmatch(name):
        raise ResourceFailed(f"RoleName {name} is not a valid IAM role name")
    if not ROLE_PATH.fullmatch(path):
        raise ResourceFailed(f"Path {path} is not a valid IAM path")
    action.physical_id = name
    action.attributes.update(
        Arn=f"arn:aws:iam::{action.account_id}:role{path}{name}", RoleId=role_id(action.account_id, name)
    )
    return True


ROLE = ResourceType(
    name="AWS::IAM::Role",
    create=_record_role,
    delete=lambda action: True,
    update=_record_role,
    updatable=frozenset(
        {
            "AssumeRolePolicyDocument",
            "Policies",
            "ManagedPolicyArns",
            "Description",
            "MaxSessionDuration",
            "Tags",
            "PermissionsBoundary",
        }
    ),
    attributes=frozenset({"Arn", "RoleId"}),
    name_property="RoleName",
    capability="CAPABILITY_IAM",
    properties=frozenset(
        {
            "AssumeRolePolicyDocument",
            "RoleName",
            "Path",
            "Policies",
            "ManagedPolicyArns",
            "Description",
            "MaxSessionDuration",
            "Tags",
            "PermissionsBoundary",
        }
    ),
    description="recorded only: SelfMaker models no IAM roles and enforces no IAM policy; Ref is the name",
).register()
