"""The Athena subset the SageMaker SDK needs: SQL over the feature store's offline store.

StartQueryExecution, GetQueryExecution, GetQueryResults and StopQueryExecution.
A query is Presto SQL, as Athena (engine v2/v3) speaks it; sqlglot translates it
to DuckDB's dialect and DuckDB runs it over the Parquet files of the tables it
names. Tables are resolved like Glue would: a feature group's table is its
OfflineStoreConfig.DataCatalogConfig (unless DisableGlueTableCreation), and
CREATE EXTERNAL TABLE registers others (the SDK's dataset builder uploads a
DataFrame as CSV and declares it so). Results go where Athena puts them:
``<OutputLocation>/<QueryExecutionId>.csv`` with a ``.csv.metadata`` beside it.

Executions are rows in the metadata store (QUEUED -> RUNNING -> SUCCEEDED |
FAILED | CANCELLED), records the reconciler moves forward: StartQueryExecution
kicks the new query, the reconciler hands it to a pool of threads that runs it,
and queries that were queued or running when the server stopped run again when
it starts.

The query string is hostile: :mod:`.athena_sql` decides which statements are
accepted and runs them in a DuckDB locked away from files, the network and
extensions. Every object read or written (tables' data, results) goes through
the query's account's view of the object store, so another account's bucket
is never touched; StartQueryExecution refuses an output location or a table
LOCATION in one up front.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete, insert, select, update

from ..backends import background_worker
from ..engines.reconciler import TableController, kick, register_table
from ..objects.access import AccountObjects
from ..objects.base import parse_s3_uri
from ..server.errors import AWSError, already_exists
from ..server.operations import Context, operation
from ..store import schema
from .athena_sql import Sandbox, SyntaxFailure, execute_one, invalid, parse_statement, refuse_engine_access

log = logging.getLogger("selfmaker.athena")

SERVICE = "athena"
DEFAULT_CATALOG = "AwsDataCatalog"
DEFAULT_DATABASE = "default"
ENGINE_VERSION = {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"}
START_WAIT = 2.0  # StartQueryExecution waits this long for a quick query, so the first poll sees it finished
WORKERS = 2
Q = schema.athena_queries
T = schema.athena_tables

# Hive column types (CREATE EXTERNAL TABLE) -> DuckDB.
HIVE_TYPES = {
    "string": "VARCHAR",
    "varchar": "VARCHAR",
    "char": "VARCHAR",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "tinyint": "TINYINT",
    "double": "DOUBLE",
    "float": "FLOAT",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "text": "VARCHAR",
}


# ---------------------------------------------------------------------------
# Operations


@operation(SERVICE, "StartQueryExecution")
def start_query_execution(ctx: Context, params: dict) -> dict:
    output = (params.get("ResultConfiguration") or {}).get("OutputLocation")
    if not output:
        raise invalid(
            "No output location provided. An output location is required either through the Workgroup "
            "result configuration setting or as an API input."
        )
    if not output.startswith("s3://") or not output[5:].split("/", 1)[0]:
        raise invalid(f"The output location {output} is not an s3://bucket/prefix URI.")
    _check_output_bucket(ctx.backends, ctx.account_id, output[5:].split("/", 1)[0])
    try:
        kind, statement = parse_statement(params["QueryString"])
    except SyntaxFailure:
        kind = "DML"  # accepted, then FAILED by the run with the parser's message, as Athena does
    else:
        if kind == "DDL":
            _check_ddl(ctx.backends, ctx.account_id, statement)
    context = params.get("QueryExecutionContext") or {}
    query_id = str(uuid.uuid4())
    now = time.time()
    execution = {
        "QueryExecutionId": query_id,
        "Query": params["QueryString"],
        "StatementType": kind,
        "ResultConfiguration": {"OutputLocation": f"{output.rstrip('/')}/{query_id}.csv"},
        "QueryExecutionContext": {
            "Catalog": context.get("Catalog") or DEFAULT_CATALOG,
            "Database": context.get("Database") or DEFAULT_DATABASE,
        },
        "WorkGroup": params.get("WorkGroup") or "primary",
        "EngineVersion": ENGINE_VERSION,
        "Status": {"State": "QUEUED", "SubmissionDateTime": now},
    }
    if execution["StatementType"] == "DDL":
        execution["ResultConfiguration"]["OutputLocation"] = f"{output.rstrip('/')}/{query_id}.txt"
    with ctx.store.write() as conn:
        conn.execute(
            insert(Q).values(id=query_id, account_id=ctx.account_id, region=ctx.region, state="QUEUED", data=execution)
        )
    done = runner(ctx.backends).expect(query_id)
    kick(ctx.backends, QUERIES.key(query_id))
    done.wait(START_WAIT)
    return {"QueryExecutionId": query_id}


def _check_output_bucket(backends, account_id: str, bucket: str) -> None:
    """Athena's answer when it cannot use the output bucket: it is missing, or another account's."""
    try:
        AccountObjects.of(backends, account_id).authorize(bucket)
    except AWSError:
        raise invalid(f"Unable to verify/create output bucket {bucket}") from None


def _check_ddl(backends, account_id: str, statement) -> None:
    """Refuse up front the DDL the run would refuse, a LOCATION in another account's bucket above all."""
    from sqlglot import exp

    if isinstance(statement, exp.Create):
        location = external_table(statement)["location"]
        bucket = parse_s3_uri(location)[0]
        try:
            AccountObjects.of(backends, account_id).authorize(bucket)
        except AWSError as err:
            if err.code != "NoSuchBucket":  # a table may name a bucket yet to be made, as on AWS
                raise invalid(
                    f"Access Denied: the table LOCATION {location} is in a bucket of another account."
                ) from None


def _load(ctx: Context, query_id: str) -> dict:
    with ctx.store.read() as conn:
        row = conn.execute(
            select(Q.c.data).where(Q.c.id == query_id, Q.c.account_id == ctx.account_id, Q.c.region == ctx.region)
        ).first()
    if row is None:
        raise invalid(f"QueryExecution {query_id} was not found")
    return row[0]


@operation(SERVICE, "GetQueryExecution")
def get_query_execution(ctx: Context, params: dict) -> dict:
    return {"QueryExecution": _load(ctx, params["QueryExecutionId"])}


@operation(SERVICE, "StopQueryExecution")
def stop_query_execution(ctx: Context, params: dict) -> dict:
    execution = _load(ctx, params["QueryExecutionId"])
    if execution["Status"]["State"] in ("QUEUED", "RUNNING"):
        _finish(ctx.backends, execution, "CANCELLED", reason="Query cancelled by user", only_from=("QUEUED", "RUNNING"))
    return {}


@operation(SERVICE, "GetQueryResults")
def get_query_results(ctx: Context, params: dict) -> dict:
    execution = _load(ctx, params["QueryExecutionId"])
    state = execution["Status"]["State"]
    if state != "SUCCEEDED":
        raise invalid(
            f"Query has not yet finished. Current state: {state}"
            if state in ("QUEUED", "RUNNING")
            else f"Query did not succeed. Current state: {state}"
        )
    if execution["StatementType"] != "DML":
        return {"ResultSet": {"Rows": [], "ResultSetMetadata": {"ColumnInfo": []}}, "UpdateCount": 0}
    location = execution["ResultConfiguration"]["OutputLocation"]
    bucket, key = location[5:].split("/", 1)
    objects = AccountObjects.of(ctx.backends, ctx.account_id)
    try:
        columns = json.loads(objects.get_object(bucket, key + ".metadata"))["ColumnInfo"]
        rows = list(csv.reader(io.StringIO(objects.get_object(bucket, key).decode("utf-8"))))
    except AWSError as err:
        raise invalid(f"Unable to read the results at {location}: {err.message}") from None
    limit = params.get("MaxResults") or 1000
    if limit > 1000:
        raise invalid("MaxResults is at most 1000.")
    start, scope = 0, ["GetQueryResults", execution["QueryExecutionId"]]
    if params.get("NextToken"):
        start = ctx.backends.resources.read_page_token(
            params["NextToken"], scope, invalid("The NextToken does not belong to this query.")
        )["row"]
    # The header row comes first, as on Athena; empty CSV fields are NULLs (no VarCharValue).
    page = rows[start : start + limit]
    out = {
        "ResultSet": {
            "Rows": [
                {"Data": [{"VarCharValue": v} if v != "" or i == 0 else {} for v in row]}
                for i, row in ((start + n, r) for n, r in enumerate(page))
            ],
            "ResultSetMetadata": {"ColumnInfo": columns},
        },
        "UpdateCount": 0,
    }
    if start + limit < len(rows):
        out["NextToken"] = ctx.backends.resources.page_token(scope, row=start + limit)
    return out


# ---------------------------------------------------------------------------
# Running queries


class Runner:
    """The thread pool that runs queries, the DuckDB they run in, and the events StartQueryExecution waits on.

    Queries run on a pool of their own, not on the reconciler's threads: a long query must not hold
    up jobs and endpoints. The reconciler only hands each QUEUED (or, after a restart, RUNNING) query
    to it, once.
    """

    def __init__(self, backends):
        self.backends = backends
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="athena")
        self.sandbox = Sandbox()
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()  # handed to the pool, not yet ended

    def expect(self, query_id: str) -> threading.Event:
        """The event set when ``query_id``'s run ends (ask before the query is kicked)."""
        with self._lock:
            return self._done.setdefault(query_id, threading.Event())

    def dispatch(self, query_id: str) -> None:
        with self._lock:
            if query_id in self._in_flight:
                return
            self._in_flight.add(query_id)
            done = self._done.setdefault(query_id, threading.Event())
        try:
            self.pool.submit(self._run, query_id, done)
        except RuntimeError:  # the pool is shut down: the server is stopping; the next start resumes it
            with self._lock:
                self._in_flight.discard(query_id)
            raise

    def _run(self, query_id: str, done: threading.Event) -> None:
        try:
            run_query(self.backends, query_id)
        except Exception:
            log.exception("athena query %s failed unexpectedly", query_id)
        finally:
            done.set()
            with self._lock:
                self._done.pop(query_id, None)
                self._in_flight.discard(query_id)

    # The background-worker protocol: the reconciler resumes what a stopped server left; stop the pool.
    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.sandbox.close()


def runner(backends) -> Runner:
    return backends.shared("athena", lambda: Runner(backends))


@background_worker
def _start_runner(backends) -> Runner:
    return runner(backends)


def _active_queries(backends) -> list[str]:
    with backends.store.read() as conn:
        return [r[0] for r in conn.execute(select(Q.c.id).where(Q.c.state.in_(("QUEUED", "RUNNING"))))]


def _advance(backends, query_id: str) -> None:
    """A QUEUED query (or one a stopped server left RUNNING) goes to the runner; run_query moves it on."""
    runner(backends).dispatch(query_id)
    return


QUERIES = register_table(TableController("athena-query", _active_queries, _advance))


def _finish(
    backends,
    execution: dict,
    state: str,
    reason: str | None = None,
    only_from=("RUNNING",),
    statistics: dict | None = None,
) -> bool:
    status = {**execution["Status"], "State": state}
    if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
        status["CompletionDateTime"] = time.time()
    if reason:
        status["StateChangeReason"] = reason
    if state == "FAILED":
        status["AthenaError"] = {
            "ErrorCategory": 2,
            "ErrorType": 1300,
            "Retryable": False,
            "ErrorMessage": reason or "",
        }
    execution = {**execution, "Status": status}
    if statistics:
        execution["Statistics"] = statistics
    with backends.store.write() as conn:
        changed = conn.execute(
            update(Q)
            .where(Q.c.id == execution["QueryExecutionId"], Q.c.state.in_(only_from))
            .values(state=state, data=execution)
        ).rowcount
    return bool(changed)


def run_query(backends, query_id: str) -> None:
    with backends.store.read() as conn:
        row = conn.execute(select(Q.c.account_id, Q.c.region, Q.c.data).where(Q.c.id == query_id)).first()
    if row is None:
        return
    account_id, region, execution = row
    if not _finish(backends, execution, "RUNNING", only_from=("QUEUED", "RUNNING")):
        return  # cancelled before it started
    execution["Status"]["State"] = "RUNNING"
    started = time.time()
    try:
        # Parsed again, not trusted from the row: a query queued by an older server was never checked.
        kind, statement = parse_statement(execution["Query"])
        if kind == "DDL":
            run_ddl(backends, account_id, region, execution, statement)
            scanned = 0
        else:
            scanned = run_select(backends, account_id, region, execution, statement)
    except SyntaxFailure as err:
        _finish(backends, execution, "FAILED", reason=str(err))
        return
    except AWSError as err:
        _finish(backends, execution, "FAILED", reason=err.message)
        return
    except Exception as exc:  # a SQL error is the query's failure, reported as Athena reports it
        _finish(backends, execution, "FAILED", reason=f"{type(exc).__name__}: {exc}")
        return
    elapsed = int((time.time() - started) * 1000)
    _finish(
        backends,
        execution,
        "SUCCEEDED",
        statistics={
            "EngineExecutionTimeInMillis": elapsed,
            "TotalExecutionTimeInMillis": elapsed,
            "DataScannedInBytes": scanned,
            "QueryQueueTimeInMillis": int((started - execution["Status"]["SubmissionDateTime"]) * 1000),
        },
    )


# ---------------------------------------------------------------------------
# DDL: CREATE EXTERNAL TABLE / DROP TABLE


def run_ddl(backends, account_id: str, region: str, execution: dict, statement) -> None:
    from sqlglot import exp

    context = execution["QueryExecutionContext"]
    if isinstance(statement, exp.Drop):
        table = (statement.args.get("tables") or [statement.this])[0]
        key = _table_key(account_id, region, context, table)
        with backends.store.write() as conn:
            gone = conn.execute(delete(T).where(*_key_clause(key))).rowcount
        if not gone and not statement.args.get("exists"):
            raise AWSError("InvalidRequestException", f"Table {key[3]}.{key[4]} not found")
        return
    data = external_table(statement)
    _check_ddl(backends, account_id, statement)  # the bucket may have changed hands since the query was queued
    schema_node = statement.this
    table = schema_node.this if isinstance(schema_node, exp.Schema) else schema_node
    key = _table_key(account_id, region, context, table)
    with backends.store.write() as conn:
        exists = conn.execute(select(T.c.name).where(*_key_clause(key))).first()
        if exists:
            if statement.args.get("exists"):
                return
            raise already_exists("InvalidRequestException", f"Table {key[4]} already exists")
        conn.execute(
            insert(T).values(account_id=key[0], region=key[1], catalog=key[2], database=key[3], name=key[4], data=data)
        )


def external_table(statement) -> dict:
    """The stored definition of a CREATE EXTERNAL TABLE: location, format, columns and CSV options."""
    from sqlglot import exp

    schema_node = statement.this
    columns = (
        [[c.name, c.args["kind"].sql(dialect="hive").lower()] for c in schema_node.expressions]
        if isinstance(schema_node, exp.Schema)
        else []
    )
    properties = statement.args.get("properties")
    location, fmt, csv_options = None, "parquet", {}
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.LocationProperty):
            location = prop.this.name
        elif isinstance(prop, exp.RowFormatSerdeProperty):
            serde = prop.this.name.lower()
            fmt = "csv" if ("csv" in serde or "lazysimple" in serde) else "parquet"
            for p in prop.args.get("serde_properties").expressions if prop.args.get("serde_properties") else []:
                csv_options[p.this.name] = p.args["value"].name
        elif isinstance(prop, exp.FileFormatProperty):
            fmt = "csv" if prop.this.name.upper() == "TEXTFILE" else "parquet"
    if not location or not location.startswith("s3://") or not location[5:].split("/", 1)[0]:
        raise invalid("CREATE EXTERNAL TABLE needs a LOCATION 's3://bucket/prefix'.")
    for _, kind in columns:
        if kind.split("(")[0] not in HIVE_TYPES:
            raise invalid(f"Column type {kind} is not supported.")
    return {"location": location, "format": fmt, "columns": columns, "csv": csv_options}


def _table_key(account_id: str, region: str, context: dict, table) -> tuple[str, str, str, str, str]:
    catalog = (table.catalog or context.get("Catalog") or DEFAULT_CATALOG).lower()
    database = (table.db or context.get("Database") or DEFAULT_DATABASE).lower()
    return account_id, region, catalog.lower(), database, table.name.lower()


def _key_clause(key):
    return (
        T.c.account_id == key[0],
        T.c.region == key[1],
        T.c.catalog == key[2],
        T.c.database == key[3],
        T.c.name == key[4],
    )


# ---------------------------------------------------------------------------
# SELECT: Presto -> DuckDB over the tables' data, read by the server for the query's account


def run_select(backends, account_id: str, region: str, execution: dict, statement) -> int:
    """Run the query and write its CSV and metadata; the bytes of table data it read."""
    from sqlglot import exp

    refuse_engine_access(statement)
    objects = AccountObjects.of(backends, account_id)
    context = execution["QueryExecutionContext"]
    ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    con = runner(backends).sandbox.connect()
    try:
        scanned = 0
        views: dict[tuple, str] = {}
        for table in list(statement.find_all(exp.Table)):
            if not table.db and table.name.lower() in ctes:
                continue
            key = _table_key(account_id, region, context, table)
            if key not in views:
                views[key] = f"__table_{len(views)}"
                scanned += register_table(backends, objects, con, key, views[key])
            alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
            table.replace(exp.Table(this=exp.to_identifier(views[key]), alias=alias))
        _presto_functions(statement)
        result = execute_one(con, statement.sql(dialect="duckdb"))
        names = [d[0] for d in result.description]
        arrow = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
    finally:
        con.close()
    write_results(objects, execution["ResultConfiguration"]["OutputLocation"], names, arrow)
    return scanned


def _presto_functions(statement) -> None:
    """Presto functions sqlglot passes through unchanged, which DuckDB would misread."""
    from sqlglot import exp

    for func in list(statement.find_all(exp.Anonymous)):
        args = func.expressions
        # Teradata's to_timestamp(text, 'yyyy-mm-dd hh24:mi:ss'), which the SDK's as_of() writes.
        if func.name.lower() == "to_timestamp" and len(args) == 2 and args[1].is_string:
            fmt = args[1].name
            for teradata, strftime in (
                ("yyyy", "%Y"),
                ("mm", "%m"),
                ("dd", "%d"),
                ("hh24", "%H"),
                ("mi", "%M"),
                ("ss", "%S"),
            ):
                fmt = fmt.replace(teradata, strftime)
            func.replace(exp.Anonymous(this="strptime", expressions=[args[0], exp.Literal.string(fmt)]))


def register_table(backends, objects: AccountObjects, con, key: tuple, view: str) -> int:
    """Make ``view`` in ``con`` the table ``key`` names, read through ``objects``; the bytes read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    account_id, region, catalog, database, name = key
    with backends.store.read() as conn:
        row = conn.execute(select(T.c.data).where(*_key_clause(key))).first()
    if row is not None:
        return _register_external(objects, con, row[0], view)
    group = _feature_group_for(backends, account_id, region, catalog, database, name)
    if group is None:
        raise AWSError("InvalidRequestException", f"line 1: Table '{catalog}.{database}.{name}' does not exist")
    from ..services.featurestore.offline import arrow_schema, split_uri
    from ..services.featurestore.state import feature_store

    bucket, prefix = split_uri(group.offline_uri)
    objects.authorize(bucket)  # before the flush writes there on the query's behalf
    feature_store(backends).offline.flush(group.key)  # read our own writes, unlike Athena's 15 minutes
    target = arrow_schema(group)
    tables, scanned = [], 0
    for info in objects.iter_objects(bucket, prefix + "/"):
        if not info.key.endswith(".parquet"):
            continue
        body = objects.get_object(bucket, info.key)
        scanned += len(body)
        tables.append(_conform(pq.read_table(io.BytesIO(body)), target))
    table = pa.concat_tables(tables) if tables else target.empty_table()
    con.register(view, table)
    return scanned


def _conform(table, target):
    """A file written before features were added: the missing columns as nulls, in the table's order."""
    import pyarrow as pa

    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in target
    ]
    return pa.Table.from_arrays(columns, schema=target)


def _feature_group_for(backends, account_id, region, catalog, database, name):
    from ..services.featurestore.definitions import Group

    for record in backends.resources.iterate(account_id, region, ["FeatureGroup"]):
        offline = record.data.get("OfflineStoreConfig") or {}
        dc = offline.get("DataCatalogConfig") or {}
        if offline.get("DisableGlueTableCreation") or record.status != "Created":
            continue
        if (dc.get("TableName", "").lower(), dc.get("Database", "").lower(), dc.get("Catalog", "").lower()) == (
            name,
            database,
            catalog,
        ):
            return Group.from_data(account_id, region, record.data, record.status)
    return None


def _register_external(objects: AccountObjects, con, data: dict, view: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bucket, prefix = parse_s3_uri(data["location"])
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    bodies = [
        objects.get_object(bucket, info.key)
        for info in objects.iter_objects(bucket, prefix)
        if not info.key.endswith("/")
    ]
    names = [c[0] for c in data["columns"]]
    if data["format"] == "parquet":
        tables = [pq.read_table(io.BytesIO(b)) for b in bodies]
        con.register(
            view + "_raw",
            pa.concat_tables(tables, promote_options="default")
            if tables
            else pa.table({n: pa.array([], pa.string()) for n in names}),
        )
    else:
        options = data.get("csv") or {}
        reader_args = {
            "delimiter": options.get("separatorChar", ","),
            "quotechar": options.get("quoteChar", '"'),
            "escapechar": options.get("escapeChar") or None,
        }
        rows = [r for b in bodies for r in csv.reader(io.StringIO(b.decode("utf-8")), **reader_args)]
        raw = {
            n: pa.array([r[i] if i < len(r) and r[i] != "" else None for r in rows], pa.string())
            for i, n in enumerate(names)
        }
        con.register(view + "_raw", pa.table(raw))
    casts = ", ".join(
        f"TRY_CAST({_quoted(n)} AS {HIVE_TYPES[t.split('(')[0]]}) AS {_quoted(n)}" for n, t in data["columns"]
    )
    execute_one(con, f"CREATE TEMP VIEW {_quoted(view)} AS SELECT {casts} FROM {_quoted(view + '_raw')}")
    return sum(len(b) for b in bodies)


def _quoted(name: str) -> str:
    """A DuckDB identifier for a column name the caller chose (it may hold a double quote)."""
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------
# Results: CSV as Athena writes it, and the column metadata beside it


def _athena_type(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "varchar"
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp with time zone" if arrow_type.tz else "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_list(arrow_type):
        return "array"
    return "varchar"


def _text(value) -> str:
    import datetime as dt

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
        return text + (" UTC" if value.tzinfo else "")
    if isinstance(value, list):
        return "[" + ", ".join("null" if v is None else _text(v) for v in value) + "]"
    return str(value)


def write_results(objects: AccountObjects, location: str, names: list[str], table) -> None:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(names)
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for values in zip(*columns):
        out.write(",".join("" if v is None else '"' + _text(v).replace('"', '""') + '"' for v in values) + "\n")
    bucket, key = location[5:].split("/", 1)
    metadata = {
        "ColumnInfo": [
            {
                "CatalogName": "hive",
                "SchemaName": "",
                "TableName": "",
                "Name": n,
                "Label": n,
                "Type": _athena_type(table.schema.field(i).type),
                "Precision": 0,
                "Scale": 0,
                "Nullable": "UNKNOWN",
                "CaseSensitive": _athena_type(table.schema.field(i).type) == "varchar",
            }
            for i, n in enumerate(names)
        ]
    }
    objects.put_object(bucket, key, out.getvalue().encode("utf-8"))
    objects.put_object(bucket, key + ".metadata", json.dumps(metadata).encode())
