"""EventBridge event buses, rules, targets and tags (JSON 1.1, ``AWSEvents.*``).

Every account has its ``default`` bus in each region; CreateEventBus adds custom ones. A rule
belongs to one bus and matches events with its pattern (aws/events/pattern.py). Targets are SQS
queues and SageMaker pipelines of the rule's own account and region (aws/events/targets.py checks
them); a bus or rule ARN of another account names nothing here.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ...server.errors import AWSError, already_exists, validation
from ...server.operations import Context, operation
from ...store import schema, tag_store
from .pattern import compile_pattern
from .targets import check_target

B, RULES, TARGETS = schema.events_buses, schema.events_rules, schema.events_targets
DEFAULT_BUS = "default"
MAX_TARGETS_PER_RULE = 5  # AWS's quota


def not_found(message: str) -> AWSError:
    return AWSError("ResourceNotFoundException", message)


def bus_arn(account_id: str, region: str, bus: str) -> str:
    return f"arn:aws:events:{region}:{account_id}:event-bus/{bus}"


def rule_arn(account_id: str, region: str, bus: str, name: str) -> str:
    path = name if bus == DEFAULT_BUS else f"{bus}/{name}"
    return f"arn:aws:events:{region}:{account_id}:rule/{path}"


# -- buses -------------------------------------------------------------------------------


def bus_name(ctx: Context, value: str | None) -> str:
    """The bus a request names (a name or an ARN), which must be the caller's own and must exist."""
    name = value or DEFAULT_BUS
    if name.startswith("arn:"):
        prefix = bus_arn(ctx.account_id, ctx.region, "")
        if not name.startswith(prefix):
            raise not_found(f"Event bus {name} does not exist.")
        name = name[len(prefix) :]
    return name


def require_bus(conn, ctx: Context, value: str | None) -> str:
    name = bus_name(ctx, value)
    if name != DEFAULT_BUS and _bus_row(conn, ctx, name) is None:
        raise not_found(f"Event bus {name} does not exist.")
    return name


def _bus_row(conn, ctx: Context, name: str):
    return conn.execute(
        select(B).where(B.c.account_id == ctx.account_id, B.c.region == ctx.region, B.c.name == name)
    ).first()


@operation("events", "CreateEventBus")
def create_event_bus(ctx: Context, params: dict) -> dict:
    name = params["Name"]
    for member in ("EventSourceName", "KmsKeyIdentifier", "DeadLetterConfig", "LogConfig"):
        if params.get(member):
            raise validation(f"{member} is not supported by SelfMaker's event buses.")
    if name == DEFAULT_BUS or "/" in name:
        raise validation(f"Event bus name {name} is not valid: it is reserved or contains '/'.")
    arn = bus_arn(ctx.account_id, ctx.region, name)
    try:
        with ctx.store.write() as conn:
            conn.execute(
                B.insert().values(
                    account_id=ctx.account_id,
                    region=ctx.region,
                    name=name,
                    description=params.get("Description"),
                    created_at=round(time.time(), 3),
                )
            )
            if params.get("Tags"):
                tag_store.add(conn, arn, params["Tags"], _too_many_tags())
    except IntegrityError:
        raise already_exists("ResourceAlreadyExistsException", f"Event bus {name} already exists.") from None
    return {"EventBusArn": arn, "Description": params.get("Description")}


def _bus_answer(ctx: Context, name: str, row) -> dict:
    answer = {"Name": name, "Arn": bus_arn(ctx.account_id, ctx.region, name)}
    if row is not None:
        answer.update(Description=row.description, CreationTime=row.created_at, LastModifiedTime=row.created_at)
    return answer


@operation("events", "DescribeEventBus")
def describe_event_bus(ctx: Context, params: dict) -> dict:
    with ctx.store.read() as conn:
        name = require_bus(conn, ctx, params.get("Name"))
        return _bus_answer(ctx, name, None if name == DEFAULT_BUS else _bus_row(conn, ctx, name))


@operation("events", "ListEventBuses")
def list_event_buses(ctx: Context, params: dict) -> dict:
    prefix = params.get("NamePrefix") or ""
    limit = params.get("Limit") or 100
    scope = ["ListEventBuses", prefix]
    after = ""
    if params.get("NextToken"):
        after = ctx.backends.resources.read_page_token(params["NextToken"], scope, _bad_token())["after"]
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(B)
            .where(B.c.account_id == ctx.account_id, B.c.region == ctx.region, B.c.name > after)
            .order_by(B.c.name)
        ).all()
    buses = sorted([(DEFAULT_BUS, None), *((r.name, r) for r in rows)], key=lambda b: b[0])
    buses = [b for b in buses if b[0].startswith(prefix) and b[0] > after]
    page = buses[:limit]
    result: dict = {"EventBuses": [_bus_answer(ctx, name, row) for name, row in page]}
    if len(buses) > limit:
        result["NextToken"] = ctx.backends.resources.page_token(scope, after=page[-1][0])
    return result


@operation("events", "DeleteEventBus")
def delete_event_bus(ctx: Context, params: dict) -> dict:
    name = bus_name(ctx, params["Name"])
    if name == DEFAULT_BUS:
        raise validation("Cannot delete event bus default.")
    with ctx.store.write() as conn:
        if conn.execute(
            select(RULES.c.id).where(
                RULES.c.account_id == ctx.account_id, RULES.c.region == ctx.region, RULES.c.bus == name
            )
        ).first():
            raise validation(f"Cannot delete event bus {name}: it still has rules. Delete them first.")
        conn.execute(delete(B).where(B.c.account_id == ctx.account_id, B.c.region == ctx.region, B.c.name == name))
        tag_store.forget(conn, bus_arn(ctx.account_id, ctx.region, name))
    return {}


def _bad_token() -> AWSError:
    return validation("The NextToken is not valid.")


def _too_many_tags() -> AWSError:
    return AWSError("LimitExceededException", "A resource can have at most 50 tags.")


# -- rules -------------------------------------------------------------------------------


def _rule_row(conn, ctx: Context, bus: str, name: str, lock: bool = False):
    query = select(RULES).where(
        RULES.c.account_id == ctx.account_id, RULES.c.region == ctx.region, RULES.c.bus == bus, RULES.c.name == name
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise not_found(f"Rule {name} does not exist on EventBus {bus}.")
    return row


@operation("events", "PutRule")
def put_rule(ctx: Context, params: dict) -> dict:
    name = params["Name"]
    if params.get("ScheduleExpression"):
        raise validation("ScheduleExpression is not supported by SelfMaker yet; give an EventPattern.")
    if not params.get("EventPattern"):
        raise validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
    compile_pattern(params["EventPattern"])
    state = params.get("State") or "ENABLED"
    data = {k: params[k] for k in ("Description", "RoleArn") if params.get(k) is not None}
    with ctx.store.write() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        arn = rule_arn(ctx.account_id, ctx.region, bus, name)
        where = (
            RULES.c.account_id == ctx.account_id,
            RULES.c.region == ctx.region,
            RULES.c.bus == bus,
            RULES.c.name == name,
        )
        values = dict(state=state, pattern=params["EventPattern"], data=data)
        if conn.execute(update(RULES).where(*where).values(**values)).rowcount == 0:
            conn.execute(
                RULES.insert().values(
                    account_id=ctx.account_id,
                    region=ctx.region,
                    bus=bus,
                    name=name,
                    created_at=round(time.time(), 3),
                    **values,
                )
            )
        if params.get("Tags"):
            tag_store.add(conn, arn, params["Tags"], _too_many_tags())
    return {"RuleArn": arn}


def _rule_answer(ctx: Context, row) -> dict:
    return {
        "Name": row.name,
        "Arn": rule_arn(ctx.account_id, ctx.region, row.bus, row.name),
        "EventPattern": row.pattern,
        "State": row.state,
        "EventBusName": row.bus,
        "CreatedBy": ctx.account_id,
        **row.data,
    }


@operation("events", "DescribeRule")
def describe_rule(ctx: Context, params: dict) -> dict:
    with ctx.store.read() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        return _rule_answer(ctx, _rule_row(conn, ctx, bus, params["Name"]))


@operation("events", "ListRules")
def list_rules(ctx: Context, params: dict) -> dict:
    prefix = params.get("NamePrefix") or ""
    limit = params.get("Limit") or 100
    with ctx.store.read() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        scope = ["ListRules", bus, prefix]
        after = ""
        if params.get("NextToken"):
            after = ctx.backends.resources.read_page_token(params["NextToken"], scope, _bad_token())["after"]
        rows = conn.execute(
            select(RULES)
            .where(
                RULES.c.account_id == ctx.account_id,
                RULES.c.region == ctx.region,
                RULES.c.bus == bus,
                RULES.c.name > after,
                RULES.c.name.startswith(prefix, autoescape=True),
            )
            .order_by(RULES.c.name)
            .limit(limit + 1)
        ).all()
    result: dict = {"Rules": [_rule_answer(ctx, r) for r in rows[:limit]]}
    if len(rows) > limit:
        result["NextToken"] = ctx.backends.resources.page_token(scope, after=rows[limit - 1].name)
    return result


def _set_state(ctx: Context, params: dict, state: str) -> dict:
    with ctx.store.write() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        row = _rule_row(conn, ctx, bus, params["Name"], lock=True)
        conn.execute(update(RULES).where(RULES.c.id == row.id).values(state=state))
    return {}


@operation("events", "EnableRule")
def enable_rule(ctx: Context, params: dict) -> dict:
    return _set_state(ctx, params, "ENABLED")


@operation("events", "DisableRule")
def disable_rule(ctx: Context, params: dict) -> dict:
    return _set_state(ctx, params, "DISABLED")


@operation("events", "DeleteRule")
def delete_rule(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        try:
            row = _rule_row(conn, ctx, bus, params["Name"], lock=True)
        except AWSError:
            return {}  # AWS: deleting a rule that is not there succeeds
        if conn.execute(select(TARGETS.c.id).where(TARGETS.c.rule_id == row.id)).first():
            raise validation("Rule can't be deleted since it has targets.")
        conn.execute(delete(RULES).where(RULES.c.id == row.id))
        tag_store.forget(conn, rule_arn(ctx.account_id, ctx.region, bus, row.name))
    return {}


# -- targets -----------------------------------------------------------------------------


@operation("events", "PutTargets")
def put_targets(ctx: Context, params: dict) -> dict:
    targets = params["Targets"]
    ids = [t["Id"] for t in targets]
    if len(set(ids)) != len(ids):
        raise validation("The request contains duplicate target Ids.")
    for target in targets:
        check_target(ctx, target)  # the whole request is refused before anything changes
    with ctx.store.write() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        rule = _rule_row(conn, ctx, bus, params["Rule"], lock=True)
        present = set(conn.execute(select(TARGETS.c.target_id).where(TARGETS.c.rule_id == rule.id)).scalars())
        if len(present | set(ids)) > MAX_TARGETS_PER_RULE:
            raise AWSError(
                "LimitExceededException",
                f"The requested resource exceeds the maximum number allowed: a rule has at most "
                f"{MAX_TARGETS_PER_RULE} targets.",
            )
        for target in targets:
            spec = {k: v for k, v in target.items() if v is not None}
            values = dict(arn=target["Arn"], spec=spec)
            if target["Id"] in present:
                conn.execute(
                    update(TARGETS)
                    .where(TARGETS.c.rule_id == rule.id, TARGETS.c.target_id == target["Id"])
                    .values(**values)
                )
            else:
                conn.execute(TARGETS.insert().values(rule_id=rule.id, target_id=target["Id"], **values))
    return {"FailedEntryCount": 0, "FailedEntries": []}


@operation("events", "RemoveTargets")
def remove_targets(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        rule = _rule_row(conn, ctx, bus, params["Rule"], lock=True)
        conn.execute(delete(TARGETS).where(TARGETS.c.rule_id == rule.id, TARGETS.c.target_id.in_(params["Ids"])))
    return {"FailedEntryCount": 0, "FailedEntries": []}


@operation("events", "ListTargetsByRule")
def list_targets_by_rule(ctx: Context, params: dict) -> dict:
    limit = params.get("Limit") or 100
    with ctx.store.read() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        rule = _rule_row(conn, ctx, bus, params["Rule"])
        scope = ["ListTargetsByRule", bus, rule.name]
        after = ""
        if params.get("NextToken"):
            after = ctx.backends.resources.read_page_token(params["NextToken"], scope, _bad_token())["after"]
        rows = conn.execute(
            select(TARGETS.c.target_id, TARGETS.c.spec)
            .where(TARGETS.c.rule_id == rule.id, TARGETS.c.target_id > after)
            .order_by(TARGETS.c.target_id)
            .limit(limit + 1)
        ).all()
    result: dict = {"Targets": [r.spec for r in rows[:limit]]}
    if len(rows) > limit:
        result["NextToken"] = ctx.backends.resources.page_token(scope, after=rows[limit - 1].target_id)
    return result


@operation("events", "ListRuleNamesByTarget")
def list_rule_names_by_target(ctx: Context, params: dict) -> dict:
    limit = params.get("Limit") or 100
    with ctx.store.read() as conn:
        bus = require_bus(conn, ctx, params.get("EventBusName"))
        scope = ["ListRuleNamesByTarget", bus, params["TargetArn"]]
        after = ""
        if params.get("NextToken"):
            after = ctx.backends.resources.read_page_token(params["NextToken"], scope, _bad_token())["after"]
        names = (
            conn.execute(
                select(RULES.c.name)
                .distinct()
                .join(TARGETS, TARGETS.c.rule_id == RULES.c.id)
                .where(
                    RULES.c.account_id == ctx.account_id,
                    RULES.c.region == ctx.region,
                    RULES.c.bus == bus,
                    TARGETS.c.arn == params["TargetArn"],
                    RULES.c.name > after,
                )
                .order_by(RULES.c.name)
                .limit(limit + 1)
            )
            .scalars()
            .all()
        )
    result: dict = {"RuleNames": names[:limit]}
    if len(names) > limit:
        result["NextToken"] = ctx.backends.resources.page_token(scope, after=names[limit - 1])
    return result


# -- tags --------------------------------------------------------------------------------


def _tagged(conn, ctx: Context, arn: str) -> str:
    """``arn`` when it names one of the caller's buses or rules (ResourceNotFoundException otherwise)."""
    prefix = f"arn:aws:events:{ctx.region}:{ctx.account_id}:"
    resource = arn[len(prefix) :] if arn.startswith(prefix) else ""
    kind, _, path = resource.partition("/")
    if kind == "event-bus" and path:
        if path == DEFAULT_BUS or _bus_row(conn, ctx, path) is not None:
            return arn
    elif kind == "rule" and path:
        bus, _, name = path.rpartition("/")
        try:
            _rule_row(conn, ctx, bus or DEFAULT_BUS, name)
            return arn
        except AWSError:
            pass
    raise not_found(f"Resource {arn} does not exist.")


@operation("events", "TagResource")
def tag_resource(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        tag_store.add(conn, _tagged(conn, ctx, params["ResourceARN"]), params["Tags"], _too_many_tags())
    return {}


@operation("events", "UntagResource")
def untag_resource(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        tag_store.remove(conn, _tagged(conn, ctx, params["ResourceARN"]), params["TagKeys"])
    return {}


@operation("events", "ListTagsForResource")
def list_tags_for_resource(ctx: Context, params: dict) -> dict:
    with ctx.store.read() as conn:
        return {"Tags": tag_store.read(conn, _tagged(conn, ctx, params["ResourceARN"]))}


def rules_of_bus(conn, account_id: str, region: str, bus: str) -> list:
    """The enabled rules of a bus with their patterns' text and targets: what the delivery worker matches."""
    rows = conn.execute(
        select(RULES.c.id, RULES.c.name, RULES.c.pattern).where(
            RULES.c.account_id == account_id,
            RULES.c.region == region,
            RULES.c.bus == bus,
            RULES.c.state != "DISABLED",
        )
    ).all()
    if not rows:
        return []
    targets: dict[int, list] = {}
    for rule_id, spec in conn.execute(
        select(TARGETS.c.rule_id, TARGETS.c.spec).where(TARGETS.c.rule_id.in_([r.id for r in rows]))
    ):
        targets.setdefault(rule_id, []).append(spec)
    return [
        (rule_arn(account_id, region, bus, r.name), json.loads(r.pattern), targets.get(r.id, []))
        for r in rows
        if r.id in targets
    ]
