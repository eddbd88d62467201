"""IAM GetRole and SimulatePrincipalPolicy: the role checks SDK v3 makes on every
ModelTrainer, ModelBuilder and Pipeline (and v2's ``get_execution_role``).

SelfMaker does not model IAM users, groups, roles or policies, and it enforces
no IAM authorisation: a request is authorised once its SigV4 signature maps to
an account (see :mod:`selfmaker.server.auth`). These two operations report that
rule truthfully:

* **GetRole** — every role name exists in the caller's own account. It has path
  ``/``, a RoleId derived from the account and name (so it is stable), the
  CreateDate of this SelfMaker database, and a trust policy that lets
  ``sagemaker.amazonaws.com`` assume it, because SelfMaker runs jobs and
  endpoints with any role of the account. (A role ARN with a path, e.g.
  ``role/service-role/X``, is reported under path ``/``: GetRole only has the name.)
* **SimulatePrincipalPolicy** — for a user, role or group of the caller's own
  account, every action on every resource evaluates to ``allowed``, since no
  IAM policy restricts it here; no statement is matched because there are no
  policies. Extra policies passed in the request (PolicyInputList, boundaries,
  ResourcePolicy, context entries) cannot change that for the same reason.
  A principal of another account does not exist (``NoSuchEntity``).

Malformed input gets IAM's errors: ``ValidationError`` for model violations
(e.g. a bad role name), ``InvalidInput`` for an ARN IAM would not accept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..server.errors import AWSError
from ..server.operations import Context, operation
from ..store import schema

SAGEMAKER_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
DEFAULT_MAX_SESSION_SECONDS = 3600
DEFAULT_MAX_ITEMS = 100

# arn:aws:iam::123456789012:role/optional/path/Name (users and groups likewise)
_PRINCIPAL_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:iam::(?P<account>\d{12}):(?P<kind>user|role|group)/"
    r"(?:[\x21-\x7e]*/)?(?P<name>[\w+=,.@-]{1,128})"
)
_EPOCH_KEY = "iam.epoch"


def no_such_entity(kind: str, name: str) -> AWSError:
    return AWSError("NoSuchEntity", f"The {kind} with name {name} cannot be found.", 404)


def invalid_input(message: str) -> AWSError:
    return AWSError("InvalidInput", message)


def unique_id(prefix: str, account_id: str, name: str) -> str:
    """An IAM unique id (``AROA…`` for roles, ``AIDA…`` for users): 21 characters, the same every time."""
    digest = hashlib.sha256(f"{prefix}:{account_id}:{name}".encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:17]


def role_id(account_id: str, name: str) -> str:
    return unique_id("AROA", account_id, name)


def database_epoch(store) -> float:
    """When this SelfMaker database first answered an IAM question: the CreateDate of its roles."""
    state = schema.server_state
    query = select(state.c.value).where(state.c.key == _EPOCH_KEY)
    with store.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        try:
            with store.write() as conn:
                row = conn.execute(query).first()
                if row is None:
                    conn.execute(state.insert().values(key=_EPOCH_KEY, value=str(round(time.time())).encode()))
        except IntegrityError:  # another server process got there first
            pass
        with store.read() as conn:
            row = conn.execute(query).first()
    return float(row[0].decode())


@operation("iam", "GetRole")
def get_role(ctx: Context, params: dict) -> dict:
    name = params["RoleName"]
    return {
        "Role": {
            "Path": "/",
            "RoleName": name,
            "RoleId": role_id(ctx.account_id, name),
            "Arn": f"arn:aws:iam::{ctx.account_id}:role/{name}",
            "CreateDate": database_epoch(ctx.store),
            # IAM returns policy documents URL-encoded; botocore decodes them into dicts.
            "AssumeRolePolicyDocument": quote(json.dumps(SAGEMAKER_TRUST_POLICY, separators=(",", ":")), safe=""),
            "MaxSessionDuration": DEFAULT_MAX_SESSION_SECONDS,
        }
    }


@operation("iam", "SimulatePrincipalPolicy")
def simulate_principal_policy(ctx: Context, params: dict) -> dict:
    source = params["PolicySourceArn"]
    principal = _PRINCIPAL_ARN.fullmatch(source)
    if principal is None:
        raise invalid_input(f"Invalid Entity Arn: {source} does not clear format check.")
    if principal["account"] != ctx.account_id:
        raise no_such_entity(principal["kind"], principal["name"])
    resources = params.get("ResourceArns") or ["*"]
    malformed = [r for r in resources if r != "*" and not r.startswith("arn:")]
    if malformed:
        raise invalid_input(f"ResourceNames are not in a valid ARN format: {', '.join(malformed)}.")

    results = [_allowed(action, resources) for action in params["ActionNames"]]
    page_size = params.get("MaxItems", DEFAULT_MAX_ITEMS)
    scope = ["SimulatePrincipalPolicy", source, params["ActionNames"], resources]
    start = _read_marker(ctx, params.get("Marker"), scope)
    page = results[start : start + page_size]
    out = {"EvaluationResults": page, "IsTruncated": start + page_size < len(results)}
    if out["IsTruncated"]:
        out["Marker"] = ctx.backends.resources.page_token(scope, o=start + page_size)
    return out


def _allowed(action: str, resources: list[str]) -> dict:
    """One action's evaluation: allowed on every resource (IAM reports one result per action)."""
    result = {"EvalActionName": action, "EvalDecision": "allowed", "MatchedStatements": [], "MissingContextValues": []}
    if len(resources) == 1:
        result["EvalResourceName"] = resources[0]
    if resources != ["*"]:
        result["ResourceSpecificResults"] = [
            {
                "EvalResourceName": r,
                "EvalResourceDecision": "allowed",
                "MatchedStatements": [],
                "MissingContextValues": [],
            }
            for r in resources
        ]
    return result


def _read_marker(ctx: Context, marker: str | None, scope: list) -> int:
    if marker is None:
        return 0
    return ctx.backends.resources.read_page_token(
        marker,
        scope,
        invalid_input(
            "The Marker is invalid: it was not returned by a SimulatePrincipalPolicy call with the same principal, "
            "actions and resources."
        ),
    )["o"]
