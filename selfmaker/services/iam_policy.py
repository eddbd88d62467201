"""IAM policy documents: parse, validate and evaluate resource-based policies.

A resource policy (e.g. on a model package group) grants other accounts access.
:func:`parse` turns the JSON text into a :class:`Policy` or raises
:class:`PolicyError` with a message that names the offending element;
:meth:`Policy.decide` applies AWS's evaluation logic to one request: an explicit
Deny wins, otherwise any matching Allow allows, otherwise the request is
implicitly denied.

Conditions are evaluated, not ignored: a policy that uses an operator or key
this module cannot evaluate is refused at parse time, since silently skipping a
condition would widen (for Allow) or narrow (for Deny) what the owner wrote.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from ..server.models import service_model

VERSIONS = ("2012-10-17", "2008-10-17")
_POLICY_KEYS = {"Version", "Id", "Statement"}
_STATEMENT_KEYS = {
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
}
_SID = re.compile(r"[A-Za-z0-9 ]*")
_ACCOUNT = re.compile(r"\d{12}")
_IAM_PRINCIPAL = re.compile(
    r"arn:aws[a-z-]*:(iam::\d{12}:(root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)"
    r"|sts::\d{12}:assumed-role/[\w+=,.@-]+/[\w+=,.@-]+)"
)
_ARN_PATTERN = re.compile(r"arn:[a-z*?-]+:[a-z0-9*?-]+:[a-z0-9*?-]*:[0-9*?]*:.+")
# Principal types that are valid in a policy but never name a SelfMaker caller.
_OTHER_PRINCIPAL_TYPES = ("Service", "Federated", "CanonicalUser")

# The services whose operations are IAM actions with the "sagemaker:" prefix.
_SAGEMAKER_SERVICES = (
    "sagemaker",
    "sagemaker-runtime",
    "sagemaker-featurestore-runtime",
    "sagemaker-metrics",
    "sagemaker-edge",
)


class PolicyError(ValueError):
    """The document is not a policy this server can enforce; the message says why."""


@dataclass(frozen=True)
class Request:
    """What a caller asks: who, which action, on which resource(s)."""

    account_id: str  # the caller's account
    principal_arn: str  # arn:aws:iam::<account>:root, or the caller's user
    action: str  # e.g. "sagemaker:CreateModelPackage"
    resources: tuple[str, ...]  # the resource ARN(s) the action touches: a match on any one counts
    region: str


# -- conditions ---------------------------------------------------------------------------------


def _string_equals(value: str, pattern: str) -> bool:
    return value == pattern


def _string_equals_ignore_case(value: str, pattern: str) -> bool:
    return value.lower() == pattern.lower()


def _like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


# operator -> (test, negated). The Arn* operators compare ARNs like strings, as IAM does.
_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
    "ArnEquals": (_string_equals, False),
    "ArnNotEquals": (_string_equals, True),
    "ArnLike": (_like, False),
    "ArnNotLike": (_like, True),
}


def _context_value(key: str, request: Request) -> str | None:
    return {
        "aws:principalaccount": request.account_id,
        "aws:principalarn": request.principal_arn,
        "aws:requestedregion": request.region,
    }.get(key.lower())


_CONDITION_KEYS = ("aws:PrincipalAccount", "aws:PrincipalArn", "aws:RequestedRegion")


@dataclass(frozen=True)
class Condition:
    operator: str
    key: str
    values: tuple[str, ...]
    if_exists: bool

    def holds(self, request: Request) -> bool:
        value = _context_value(self.key, request)
        if value is None:
            return self.if_exists
        test, negated = _OPERATORS[self.operator]
        hit = any(test(value, v) for v in self.values)
        return not hit if negated else hit


# -- statements ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principals:
    """A Principal (or NotPrincipal) element: everyone, or accounts and IAM identities."""

    everyone: bool
    accounts: frozenset[str]  # whole accounts: "<id>" or arn:...:iam::<id>:root
    identities: frozenset[str]  # users and roles, by ARN

    def match(self, request: Request) -> bool:
        return self.everyone or request.account_id in self.accounts or request.principal_arn in self.identities


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    principals: Principals
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    def applies(self, request: Request) -> bool:
        if self.principals.match(request) == self.not_principal:
            return False
        action_hit = any(fnmatch.fnmatchcase(request.action.lower(), a.lower()) for a in self.actions)
        if action_hit == self.not_action:
            return False
        # SageMaker names are case-insensitive, so the ARNs that carry them are too.
        resource_hit = any(
            fnmatch.fnmatchcase(arn.lower(), r.lower()) for arn in request.resources for r in self.resources
        )
        if resource_hit == self.not_resource:
            return False
        return all(c.holds(request) for c in self.conditions)


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    def decide(self, request: Request) -> str | None:
        """ "Deny" (an explicit Deny applies), "Allow" (an Allow applies and no Deny), or None (implicit deny)."""
        effects = {s.effect for s in self.statements if s.applies(request)}
        if "Deny" in effects:
            return "Deny"
        return "Allow" if "Allow" in effects else None


# -- parsing -------------------------------------------------------------------------------------


def parse(text: str) -> Policy:
    """The policy in ``text``, or a PolicyError naming what is wrong."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"The policy is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except RecursionError:  # nested thousands deep: no policy is
        raise PolicyError("The policy is nested too deeply.") from None
    if not isinstance(document, dict):
        raise PolicyError("The policy must be a JSON object with Version and Statement.")
    unknown = sorted(set(document) - _POLICY_KEYS)
    if unknown:
        raise PolicyError(f"Unknown policy element {unknown[0]}: a policy holds only Version, Id and Statement.")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise PolicyError(f"The policy Version must be 2012-10-17 (or 2008-10-17), not {version!r}.")
    if "Id" in document and not isinstance(document["Id"], str):
        raise PolicyError("The policy Id must be a string.")
    if "Statement" not in document:
        raise PolicyError("The policy has no Statement.")
    raw = document["Statement"]
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list) or not raw:
        raise PolicyError("Statement must be a statement object or a non-empty list of them.")
    statements = tuple(_statement(s, i + 1) for i, s in enumerate(raw))
    sids = [s.sid for s in statements if s.sid]
    duplicate = next((sid for sid in sids if sids.count(sid) > 1), None)
    if duplicate:
        raise PolicyError(f"Statement ids must be unique: Sid {duplicate!r} appears more than once.")
    return Policy(statements)


def _statement(raw, number: int) -> Statement:
    where = f"Statement {number}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be a JSON object.")
    if isinstance(raw.get("Sid"), str) and raw["Sid"]:
        where += f" ({raw['Sid']})"
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise PolicyError(f"{where} has an unknown element {unknown[0]}.")
    sid = raw.get("Sid", "")
    if not isinstance(sid, str) or not _SID.fullmatch(sid):
        raise PolicyError(f"{where}: Sid must be a string of letters, digits and spaces.")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be Allow or Deny, not {effect!r}.")
    principal_key = _exactly_one(raw, "Principal", "NotPrincipal", where)
    action_key = _exactly_one(raw, "Action", "NotAction", where)
    resource_key = _exactly_one(raw, "Resource", "NotResource", where)
    return Statement(
        sid=sid,
        effect=effect,
        principals=_principals(raw[principal_key], f"{where}: {principal_key}"),
        not_principal=principal_key == "NotPrincipal",
        actions=tuple(_action(a, f"{where}: {action_key}") for a in _strings(raw[action_key], where, action_key)),
        not_action=action_key == "NotAction",
        resources=tuple(
            _resource(r, f"{where}: {resource_key}") for r in _strings(raw[resource_key], where, resource_key)
        ),
        not_resource=resource_key == "NotResource",
        conditions=_conditions(raw.get("Condition"), where),
    )


def _exactly_one(raw: dict, key: str, negated: str, where: str) -> str:
    present = [k for k in (key, negated) if k in raw]
    if len(present) != 1:
        problem = "both" if present else "neither"
        raise PolicyError(f"{where} must have exactly one of {key} and {negated}, not {problem}.")
    return present[0]


def _strings(value, where: str, element: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{where}: {element} must be a non-empty string or a non-empty list of them.")
    return values


def _principals(value, where: str) -> Principals:
    if value == "*":
        return Principals(True, frozenset(), frozenset())
    if not isinstance(value, dict) or not value:
        raise PolicyError(f'{where} must be "*" or an object such as {{"AWS": "arn:aws:iam::111122223333:root"}}.')
    accounts, identities, everyone = set(), set(), False
    for kind, ids in value.items():
        if kind in _OTHER_PRINCIPAL_TYPES:
            _strings(ids, where, kind)
            continue
        if kind != "AWS":
            raise PolicyError(
                f"{where} has an unknown principal type {kind!r} (expected AWS, {', '.join(_OTHER_PRINCIPAL_TYPES)})."
            )
        for principal in _strings(ids, where, "AWS"):
            if principal == "*":
                everyone = True
            elif _ACCOUNT.fullmatch(principal):
                accounts.add(principal)
            elif _IAM_PRINCIPAL.fullmatch(principal):
                if principal.endswith(":root"):
                    accounts.add(principal.split(":")[4])
                else:
                    identities.add(principal)
            else:
                raise PolicyError(
                    f"{where}: {principal!r} is not an AWS principal: use an account id, "
                    "arn:aws:iam::<account>:root, or a user or role ARN."
                )
    return Principals(everyone, frozenset(accounts), frozenset(identities))


@lru_cache(maxsize=1)
def _sagemaker_actions() -> frozenset[str]:
    return frozenset(name.lower() for svc in _SAGEMAKER_SERVICES for name in service_model(svc).operation_names)


def _action(action: str, where: str) -> str:
    if action == "*":
        return action
    service, sep, name = action.partition(":")
    if not sep or not name:
        raise PolicyError(f"{where}: {action!r} is not an action: write it as sagemaker:<Operation>.")
    if service.lower() != "sagemaker":
        raise PolicyError(
            f"{where}: {action!r} is not a SageMaker action; "
            "a model package group policy can grant only sagemaker: actions."
        )
    if not any(fnmatch.fnmatchcase(known, name.lower()) for known in _sagemaker_actions()):
        raise PolicyError(f"{where}: {action!r} matches no SageMaker action.")
    return action


def _resource(resource: str, where: str) -> str:
    if resource == "*" or _ARN_PATTERN.fullmatch(resource):
        return resource
    raise PolicyError(
        f'{where}: {resource!r} is not "*" or an ARN '
        "(arn:aws:sagemaker:<region>:<account>:<resource>, wildcards allowed)."
    )


def _conditions(raw, where: str) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise PolicyError(f"{where}: Condition must be an object of operators.")
    conditions = []
    for operator, block in raw.items():
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS:
            raise PolicyError(
                f"{where}: condition operator {operator!r} cannot be evaluated here; "
                f"supported: {', '.join(_OPERATORS)} (each also with IfExists)."
            )
        if not isinstance(block, dict) or not block:
            raise PolicyError(f"{where}: Condition {operator} must map condition keys to values.")
        for key, values in block.items():
            if key.lower() not in {k.lower() for k in _CONDITION_KEYS}:
                raise PolicyError(
                    f"{where}: condition key {key!r} cannot be evaluated here; supported: {', '.join(_CONDITION_KEYS)}."
                )
            conditions.append(
                Condition(base, key, tuple(_strings(values, where, f"{operator} {key}")), operator != base)
            )
    return tuple(conditions)
