"""What an Athena query may be, and the DuckDB it runs in.

A query string is hostile: DuckDB, left to itself, reads and writes host files
(``read_text('/etc/shadow')``, ``COPY ... TO``), attaches databases, installs
and loads extensions and changes its own settings. Two walls stand in the way,
each enough on its own:

1. The statement gate: the string is parsed with sqlglot (never judged by its
   first word) and accepted only if it is exactly one read-only query (SELECT,
   WITH, UNION, VALUES) or the DDL subset Athena's SDK users need (CREATE
   EXTERNAL TABLE, DROP TABLE). Inside a query, table functions (DuckDB's
   file readers and catalog introspection) and the functions that read the
   engine's settings are refused like functions Athena does not have.
2. The sandbox: the connection the query runs on has external access,
   extension auto-install/auto-load, Python replacement scans and spilling to
   disk turned off, then its configuration locked, so no SET, RESET or PRAGMA
   can turn any of it back on. Data enters only as Arrow tables the server
   itself read, through the query's account's view of the object store.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from ..server.errors import AWSError

if TYPE_CHECKING:
    from sqlglot import exp

# sqlglot and duckdb are imported where used: they take a noticeable part of a second to load, and a
# server that never runs a query should not pay for them at start-up.

# Applied when the connection is made; TimeZone needs the ICU extension loaded, so it is SET before the lock.
SANDBOX_CONFIG = {
    "enable_external_access": False,  # no files, URLs, ATTACH, COPY, EXPORT/IMPORT, INSTALL, LOAD
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "python_enable_replacements": False,  # a table name never resolves to a Python variable of the server
    "temp_directory": "",  # never spill to the server's disk
}

# DuckDB scalar functions that report the engine and its host rather than compute on data; Athena has none.
ENGINE_FUNCTIONS = {
    "current_setting",
    "getenv",
    "json_execute_serialized_sql",
    "json_deserialize_sql",
    "json_serialize_sql",
    "current_query",
}

# The first words of statements that are not queries, for naming those sqlglot cannot parse at all.
NON_QUERY_KEYWORDS = {
    "ALTER",
    "ANALYZE",
    "ATTACH",
    "BEGIN",
    "CALL",
    "CHECKPOINT",
    "COMMIT",
    "COPY",
    "CREATE",
    "DEALLOCATE",
    "DELETE",
    "DESCRIBE",
    "DETACH",
    "DROP",
    "EXECUTE",
    "EXPLAIN",
    "EXPORT",
    "GRANT",
    "IMPORT",
    "INSERT",
    "INSTALL",
    "LOAD",
    "MERGE",
    "MSCK",
    "PRAGMA",
    "PREPARE",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SET",
    "SHOW",
    "SUMMARIZE",
    "TRUNCATE",
    "UNLOAD",
    "UPDATE",
    "USE",
    "VACUUM",
}


@functools.cache
def _kinds() -> dict:
    """Statement classes whose kind a refusal names; anything else is named by its first keyword."""
    from sqlglot import exp

    return {
        exp.Insert: "INSERT",
        exp.Update: "UPDATE",
        exp.Delete: "DELETE",
        exp.Merge: "MERGE",
        exp.Copy: "COPY",
        exp.Set: "SET",
        exp.Pragma: "PRAGMA",
        exp.Alter: "ALTER",
        exp.Describe: "DESCRIBE",
        exp.Use: "USE",
        exp.Transaction: "BEGIN TRANSACTION",
        exp.Commit: "COMMIT",
        exp.Rollback: "ROLLBACK",
        exp.Pivot: "PIVOT",
    }


class SyntaxFailure(Exception):
    """SQL sqlglot cannot parse: Athena accepts the query and then fails it with the parser's message."""


def invalid(message: str) -> AWSError:
    return AWSError("InvalidRequestException", message, AthenaErrorCode="INVALID_INPUT")


def parse_statement(sql: str) -> tuple[str, exp.Expression]:
    """("DML" | "DDL", the parsed statement) for an accepted query string.

    InvalidRequestException for more than one statement or a kind other than a read-only
    query, CREATE EXTERNAL TABLE or DROP TABLE; SyntaxFailure for SQL that does not parse.
    """
    from sqlglot import exp

    statements = _parse(sql)
    if len(statements) > 1:
        raise invalid(f"Only one sql statement is allowed. Got: {sql}")
    statement = statements[0]
    if isinstance(statement, (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)):
        _check_query(statement)
        return "DML", statement
    if isinstance(statement, exp.Drop) and str(statement.args.get("kind") or "").upper() == "TABLE":
        return "DDL", statement
    if (
        isinstance(statement, exp.Create)
        and str(statement.args.get("kind") or "").upper() == "TABLE"
        and statement.args.get("expression") is None
    ):
        return "DDL", statement
    raise unsupported(_kind(statement, sql))


def unsupported(kind: str) -> AWSError:
    return invalid(
        f"{kind} statements are not supported: SelfMaker's Athena runs read-only queries (SELECT, "
        "WITH, VALUES), CREATE EXTERNAL TABLE and DROP TABLE."
    )


def _parse(sql: str) -> list[exp.Expression]:
    """The statements of ``sql``: Presto (Athena's query dialect), or Hive for the DDL Athena takes in Hive."""
    import sqlglot
    from sqlglot import exp

    text = sql.strip()
    try:
        statements = [s for s in sqlglot.parse(text, read="presto") if s is not None]
        presto_error = None
    except sqlglot.errors.SqlglotError as err:  # ParseError, TokenError
        statements, presto_error = [], err
    except RecursionError:  # sqlglot's parser recurses per nesting level
        raise SyntaxFailure("line 1:1: the query is nested too deeply") from None
    if presto_error or any(isinstance(s, (exp.Command, exp.Create, exp.Drop)) for s in statements):
        # CREATE EXTERNAL TABLE ... ROW FORMAT SERDE / STORED AS is Hive DDL, which Presto's grammar lacks.
        try:
            hive = [s for s in sqlglot.parse(text, read="hive") if s is not None]
        except (sqlglot.errors.SqlglotError, RecursionError):
            hive = []
        if hive and all(isinstance(s, (exp.Create, exp.Drop)) for s in hive):
            return hive
    if presto_error:
        # Statements neither grammar knows (EXPORT DATABASE, ATTACH, UNLOAD...) are refused by name; the rest is
        # a syntax error. Either way nothing that failed to parse is ever run.
        first = _first_word(text)
        if first in NON_QUERY_KEYWORDS:
            raise unsupported(first) from None
        raise SyntaxFailure(_syntax_message(presto_error)) from None
    if not statements:
        raise SyntaxFailure("line 1:1: the query string holds no SQL statement")
    return statements


def _first_word(sql: str) -> str:
    """The first token of ``sql``, comments skipped, upper-cased ("" if it does not even tokenize)."""
    import sqlglot

    try:
        tokens = sqlglot.tokenize(sql, read="presto")
    except sqlglot.errors.SqlglotError:
        return ""
    return tokens[0].text.upper() if tokens else ""


def _syntax_message(err: Exception) -> str:
    first = (getattr(err, "errors", None) or [{}])[0]
    description = first.get("description") or str(err).splitlines()[0]
    return f"line {first.get('line', 1)}:{first.get('col', 1)}: {description}"


def _kind(statement: exp.Expression, sql: str) -> str:
    """The statement's kind, as a refusal names it: INSERT, COPY, CREATE TABLE AS, INSTALL..."""
    from sqlglot import exp

    for cls, kind in _kinds().items():
        if isinstance(statement, cls):
            return kind
    if isinstance(statement, (exp.Create, exp.Drop)):
        kind = str(statement.args.get("kind") or "").upper()
        if isinstance(statement, exp.Create) and statement.args.get("expression") is not None:
            return f"CREATE {kind} AS"
        return f"{type(statement).__name__.upper()} {kind}".strip()
    if isinstance(statement, exp.Command):
        return str(statement.this).upper()
    # Statements sqlglot does not know (INSTALL x, SUMMARIZE t) parse as some expression: name their keyword.
    return _first_word(sql) or "Empty"


def _check_query(statement: exp.Expression) -> None:
    """Refuse what has no place in a read-only query, wherever it is nested."""
    from sqlglot import exp

    for node in statement.walk():
        if isinstance(node, exp.Into):
            raise invalid("SELECT ... INTO statements are not supported: SelfMaker's Athena runs read-only queries.")
        if isinstance(node, (exp.DML, exp.DDL, exp.Command, exp.Set, exp.Pragma, exp.Drop, exp.Alter)):
            raise invalid(f"{_kind(node, node.sql())} statements are not supported inside a query.")


def refuse_engine_access(statement: exp.Expression) -> None:
    """A table function in FROM (DuckDB's read_csv, glob, query, duckdb_settings...) or a function that reads
    the engine's settings fails the query as Athena fails a call of a function it does not have."""
    from sqlglot import exp

    for node in statement.walk():
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            raise AWSError(
                "InvalidRequestException",
                f"FUNCTION_NOT_FOUND: line 1: Table function '{_function_name(node.this)}' not registered",
            )
        if isinstance(node, exp.Lateral) and not isinstance(node.this, exp.Subquery):
            raise AWSError(
                "InvalidRequestException",
                f"FUNCTION_NOT_FOUND: line 1: Table function '{_function_name(node.this)}' not registered",
            )
        if isinstance(node, exp.Func) and _function_name(node).lower() in ENGINE_FUNCTIONS:
            raise AWSError(
                "InvalidRequestException",
                f"FUNCTION_NOT_FOUND: line 1: Function '{_function_name(node)}' not registered",
            )


def _function_name(node: exp.Expression) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.this)
    if isinstance(node, exp.Func):
        return node.sql_name()
    return node.sql()


def sandboxed_duckdb():
    """An in-memory DuckDB that cannot reach files, the network or extensions, and cannot be talked out of it:
    its configuration is locked (globally, so for every connection to it) before any query text touches it."""
    import duckdb

    db = duckdb.connect(":memory:", config=SANDBOX_CONFIG)
    try:
        db.execute("SET GLOBAL TimeZone = 'UTC'")
        db.execute("SET GLOBAL lock_configuration = true")
    except Exception:
        db.close()
        raise
    return db


class Sandbox:
    """The server's one sandboxed DuckDB; each query runs on a connection of its own to it.

    Opening a database costs tens of milliseconds, a connection under one. Connections are isolated
    where it matters: the Arrow tables and temp views one registers are invisible to every other, and
    the shared catalog stays empty because no accepted statement creates anything in it.
    """

    def __init__(self):
        self._db = None
        self._lock = threading.Lock()

    def connect(self):
        with self._lock:
            if self._db is None:
                self._db = sandboxed_duckdb()
            return self._db.cursor()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def execute_one(con, sql: str):
    """Run exactly one statement: DuckDB's execute would run every statement of a string, so count them first."""
    if len(con.extract_statements(sql)) != 1:
        raise AWSError("InvalidRequestException", "Only one sql statement is allowed.")
    return con.execute(sql)
