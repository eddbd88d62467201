"""Feature store: feature groups, a group's schema and stores, a record looked up by its identifier, and SQL
over the offline store.

The lookup is the featurestore-runtime's GetRecord and the query box is Athena's StartQueryExecution,
GetQueryExecution and GetQueryResults, all run as the session's account: Athena's own guards decide what a
statement may do and which buckets it may read or write (another account's output location is refused, a
statement outside Athena's subset fails with its reason). Starting a query is a POST with the CSRF token;
its page then shows the execution's state, following it over server-sent events while it runs, and its rows.
"""

from __future__ import annotations

from ...server.errors import AWSError, validation
from ..listing import Listing
from ..live import event_stream
from ..rendering import console_url
from ..web import Route, View, redirect

GROUPS = Listing("ListFeatureGroups", "FeatureGroupSummaries", status_filter="FeatureGroupStatusEquals")
RUNTIME = "sagemaker-featurestore-runtime"
RESULT_ROWS = 100  # per page of results (GetQueryResults takes at most 1000)
RUNNING = {"QUEUED", "RUNNING"}


async def list_groups(view: View):
    listing = await GROUPS.fetch(view)
    return view.render("featurestore/list.html", title="Feature store", listing=listing)


def _default_query(group: dict) -> str:
    catalog = (group.get("OfflineStoreConfig") or {}).get("DataCatalogConfig") or {}
    if not catalog.get("TableName"):
        return "SELECT 1"
    return f'SELECT *\nFROM "{catalog["Database"]}"."{catalog["TableName"]}"\nWHERE NOT is_deleted\nLIMIT 10'


def _default_output(group: dict) -> str:
    """Results beside the offline store, in the group's own bucket (which the caller owns)."""
    uri = ((group.get("OfflineStoreConfig") or {}).get("S3StorageConfig") or {}).get("S3Uri") or ""
    if not uri.startswith("s3://"):
        return ""
    return f"s3://{uri[5:].split('/', 1)[0]}/athena-results/"


async def group(view: View):
    name = view.labels["name"]
    described = await view.call("DescribeFeatureGroup", {"FeatureGroupName": name})
    record_id = view.query("record")
    found = None
    if record_id:
        answer = await view.call(
            "GetRecord", {"FeatureGroupName": name, "RecordIdentifierValueAsString": record_id}, service=RUNTIME
        )
        found = answer.get("Record") or []
    return view.render(
        "featurestore/group.html",
        title=f"Feature group {name}",
        group=described,
        name=name,
        record_id=record_id,
        record=found,
        query=_default_query(described),
        output=_default_output(described),
    )


async def start_query(view: View):
    name = view.labels["name"]
    sql = view.field("sql").strip()
    output = view.field("output").strip()
    if not sql:
        raise validation("Write a query first.")
    described = await view.call("DescribeFeatureGroup", {"FeatureGroupName": name})
    catalog = (described.get("OfflineStoreConfig") or {}).get("DataCatalogConfig") or {}
    params: dict = {"QueryString": sql, "ResultConfiguration": {"OutputLocation": output}}
    if catalog.get("Database"):
        params["QueryExecutionContext"] = {"Database": catalog["Database"]}
    try:
        started = await view.call("StartQueryExecution", params, service="athena")
    except AWSError as err:  # Athena refused it: the form again, with the query kept and Athena's words
        return view.render(
            "featurestore/group.html",
            400,
            title=f"Feature group {name}",
            group=described,
            name=name,
            record_id="",
            record=None,
            query=sql,
            output=output,
            query_error=f"{err.code}: {err.message}",
        )
    return redirect(console_url(f"/featurestore/{name}/queries/{started['QueryExecutionId']}"))


async def query(view: View):
    name, query_id = view.labels["name"], view.labels["query"]
    execution = (await view.call("GetQueryExecution", {"QueryExecutionId": query_id}, service="athena"))[
        "QueryExecution"
    ]
    state = execution["Status"]["State"]
    columns, rows, next_token = [], [], None
    if state == "SUCCEEDED" and execution.get("StatementType") == "DML":
        params = {"QueryExecutionId": query_id, "MaxResults": RESULT_ROWS + (0 if view.query("token") else 1)}
        if token := view.query("token"):
            params["NextToken"] = token
        answer = await view.call("GetQueryResults", params, service="athena")
        result = answer["ResultSet"]
        columns = [c["Name"] for c in result.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
        rows = [[d.get("VarCharValue") for d in row.get("Data", [])] for row in result.get("Rows", [])]
        if not token and rows:
            rows = rows[1:]  # Athena's first page starts with the header row
        next_token = answer.get("NextToken")
    return view.render(
        "featurestore/query.html",
        title="Query",
        name=name,
        execution=execution,
        state=state,
        live=state in RUNNING,
        columns=columns,
        rows=rows,
        next_token=next_token,
        first_page=not view.query("token"),
    )


async def query_events(view: View):
    """The query's state until it ends: ``state`` events, then ``end`` (the page then shows the rows)."""
    query_id = view.labels["query"]
    last: list[str | None] = [None]

    async def poll():
        execution = await view.call("GetQueryExecution", {"QueryExecutionId": query_id}, service="athena")
        state = execution["QueryExecution"]["Status"]["State"]
        events: list[tuple[str, object]] = [("state", state)] if state != last[0] else []
        last[0] = state
        return events, state not in RUNNING

    return event_stream(view.request, poll, interval=0.5)


ROUTES = [
    Route("GET", "/featurestore", list_groups),
    Route("GET", "/featurestore/{name}", group),
    Route("POST", "/featurestore/{name}/queries", start_query),
    Route("GET", "/featurestore/{name}/queries/{query}", query),
    Route("GET", "/featurestore/{name}/queries/{query}/events", query_events),
]
