"""Search and GetSearchSuggestions over every kind that declares a ``search_type``.

Properties are addressed as SageMaker addresses them: dotted paths into the
resource (``ExperimentName``, ``Source.SourceArn``), ``Tags.<key>``, and
map entries such as ``Parameters.<name>``. Filters, nested filters,
sub-expressions with And/Or, sort and signed pagination work on any kind.
"""

from __future__ import annotations

import fnmatch

from ..server.errors import validation
from ..server.models import service_model
from ..server.operations import Context, operation
from ..server.validate import parse_timestamp
from . import tagging
from .kinds import KINDS

_MISSING = object()


def _kinds_for(resource_type: str):
    return [k for k in KINDS.values() if k.search_type == resource_type]


def _document(ctx: Context, record, conn) -> dict:
    kind = KINDS[record.kind]
    doc = dict(kind.present(ctx, record) if kind.present else record.data)
    doc["Tags"] = tagging.read(conn, record.arn)
    return doc


def _lookup(doc: dict, path: str):
    """The value at a dotted property path; Tags.<key> reads the tag list as a map."""
    if path.startswith("Tags."):
        key = path[5:]
        return next((t["Value"] for t in doc.get("Tags", []) if t["Key"] == key), _MISSING)
    value = doc
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if isinstance(value, dict):
            # Map keys may themselves contain dots: try the longest key first.
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if key in value:
                    value, i = value[key], j
                    break
            else:
                return _MISSING
        elif isinstance(value, list):
            matches = [_lookup({"_": item}, "_." + ".".join(parts[i:])) for item in value]
            matches = [m for m in matches if m is not _MISSING]
            return matches if matches else _MISSING
        else:
            return _MISSING
    return value


def _coerce(actual, wanted: str):
    """Compare like with like: numbers as numbers, times as times, the rest as text."""
    if isinstance(actual, bool):
        return str(actual).lower(), wanted.lower()
    if isinstance(actual, (int, float)):
        try:
            return float(actual), float(wanted)
        except ValueError:
            stamp = parse_timestamp(wanted)
            if stamp is not None:
                return float(actual), stamp
            return str(actual), wanted
    if isinstance(actual, dict) and "Value" in actual:  # e.g. a Parameters entry {"StringValue"/"NumberValue"}
        return _coerce(actual["Value"], wanted)
    if isinstance(actual, dict):
        for key in ("NumberValue", "StringValue"):
            if key in actual:
                return _coerce(actual[key], wanted)
    return str(actual), wanted


def _test(actual, operator: str, wanted: str | None) -> bool:
    if operator == "Exists":
        return actual is not _MISSING
    if operator == "NotExists":
        return actual is _MISSING
    if actual is _MISSING:
        return operator == "NotEquals"
    if isinstance(actual, list):
        results = [_test(a, operator, wanted) for a in actual]
        return all(results) if operator == "NotEquals" else any(results)
    if wanted is None:
        raise validation(f"Filter operator {operator} needs a Value.")
    if operator == "In":
        return any(_test(actual, "Equals", w.strip()) for w in wanted.split(","))
    if operator == "Contains":
        return wanted.lower() in str(actual).lower()
    a, w = _coerce(actual, wanted)
    if isinstance(a, str) and operator in ("Equals", "NotEquals") and "*" in w:
        hit = fnmatch.fnmatchcase(a, w)
        return hit if operator == "Equals" else not hit
    try:
        return {
            "Equals": a == w,
            "NotEquals": a != w,
            "GreaterThan": a > w,
            "GreaterThanOrEqualTo": a >= w,
            "LessThan": a < w,
            "LessThanOrEqualTo": a <= w,
        }[operator]
    except TypeError:
        return False


def _filter_matches(doc: dict, f: dict) -> bool:
    return _test(_lookup(doc, f["Name"]), f.get("Operator", "Equals"), f.get("Value"))


def _matches(doc: dict, expr: dict | None) -> bool:
    if not expr:
        return True
    results = [_filter_matches(doc, f) for f in expr.get("Filters", [])]
    for nested in expr.get("NestedFilters", []):
        items = _lookup(doc, nested["NestedPropertyName"])
        items = items if isinstance(items, list) else ([] if items is _MISSING else [items])
        # All filters of a nested group must hold for one and the same item.
        results.append(
            any(
                all(
                    _filter_matches({"_": item}, {**f, "Name": "_." + f["Name"].split(".", 1)[-1]})
                    for f in nested["Filters"]
                )
                for item in items
            )
        )
    results += [_matches(doc, sub) for sub in expr.get("SubExpressions", [])]
    if not results:
        return True
    return any(results) if expr.get("Operator") == "Or" else all(results)


def _sort_key(doc: dict, path: str):
    value = _lookup(doc, path)
    if value is _MISSING or value is None:
        return (1, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (0, 0, str(value))


@operation("sagemaker", "Search")
def search(ctx: Context, params: dict) -> dict:
    resource_type = params["Resource"]
    expr = params.get("SearchExpression")
    sort_by = params.get("SortBy") or "CreationTime"
    descending = (params.get("SortOrder") or "Descending") == "Descending"
    limit = params.get("MaxResults") or 10
    offset, scope = 0, ["Search", resource_type, expr, sort_by, descending]
    if params.get("NextToken"):
        offset = ctx.backends.resources.read_page_token(params["NextToken"], scope)["o"]

    kinds = _kinds_for(resource_type)
    hits = []
    if kinds:
        with ctx.store.read() as conn:
            for record in ctx.backends.resources.iterate(ctx.account_id, ctx.region, [k.name for k in kinds]):
                doc = _document(ctx, record, conn)
                if _matches(doc, expr):
                    hits.append(doc)
    hits.sort(key=lambda d: _sort_key(d, sort_by), reverse=descending)
    page = hits[offset : offset + limit]
    result = {
        "Results": [{resource_type_member(resource_type): doc} for doc in page],
        "TotalHits": {"Value": len(hits), "Relation": "EqualTo"},
    }
    if offset + limit < len(hits):
        result["NextToken"] = ctx.backends.resources.page_token(scope, o=offset + limit)
    return result


def resource_type_member(resource_type: str) -> str:
    """The SearchRecord member that carries a resource type's documents."""
    return {"ExperimentTrial": "Trial", "ExperimentTrialComponent": "TrialComponent"}.get(resource_type, resource_type)


def _property_names(shape, prefix: str = "", depth: int = 0) -> list[str]:
    names = []
    for name, member in shape.members.items():
        path = f"{prefix}{name}"
        names.append(path)
        if member.type_name == "structure" and depth < 2:
            names += _property_names(member, path + ".", depth + 1)
    return names


@operation("sagemaker", "GetSearchSuggestions")
def get_search_suggestions(ctx: Context, params: dict) -> dict:
    resource_type = params["Resource"]
    hint = ((params.get("SuggestionQuery") or {}).get("PropertyNameQuery") or {}).get("PropertyNameHint", "")
    record_shape = service_model("sagemaker").shape_for("SearchRecord").members[resource_type_member(resource_type)]
    names = set(_property_names(record_shape))
    # Tag keys and map entries (e.g. Parameters.<name>) come from the stored resources themselves.
    kinds = _kinds_for(resource_type)
    if kinds:
        with ctx.store.read() as conn:
            for record in ctx.backends.resources.iterate(ctx.account_id, ctx.region, [k.name for k in kinds]):
                doc = _document(ctx, record, conn)
                names.update(f"Tags.{t['Key']}" for t in doc["Tags"])
                for key, value in doc.items():
                    if (
                        isinstance(value, dict)
                        and key in record_shape.members
                        and record_shape.members[key].type_name == "map"
                    ):
                        names.update(f"{key}.{k}" for k in value)
    hint_lower = hint.lower()
    found = sorted(n for n in names if n.lower().startswith(hint_lower))
    return {"PropertyNameSuggestions": [{"PropertyName": n} for n in found]}
