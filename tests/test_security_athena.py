"""Security: Athena's SQL cannot reach host files, the network, extensions or another account's buckets.

Every attack goes through real boto3 clients to a strict-mode server with two accounts: reading
/etc/passwd and the server's own credentials file through DuckDB's table functions, COPY/EXPORT to
host paths, INSTALL/LOAD, SET/PRAGMA to undo the sandbox, several statements in one string, and an
OutputLocation or table LOCATION in the other account's bucket. Each is refused and leaves no trace;
the legitimate feature-store and external-table flows still work. The last tests prove the second
wall on its own: the locked DuckDB refuses the same attacks even if a statement got past the gate.
"""

from __future__ import annotations

from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError

from selfmaker.aws.athena_sql import Sandbox, sandboxed_duckdb
from support.featurestore import create_group, record, wait_for_query

pytestmark = pytest.mark.both_databases  # bucket ownership lives in the metadata database

A = SimpleNamespace(key="AKIAATHENAACCOUNTA01", secret="athena-secret-of-a", account="111111111111")
B = SimpleNamespace(key="AKIAATHENAACCOUNTB01", secret="athena-secret-of-b", account="222222222222")
SECRET_MARK = A.secret  # whatever leaks the credentials file leaks this


@pytest.fixture(scope="module")
def credentials_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("athena-auth") / "credentials.ini"
    path.write_text(
        "".join(f"[{who.key}]\nsecret_access_key = {who.secret}\naccount_id = {who.account}\n\n" for who in (A, B))
    )
    return path


@pytest.fixture(scope="module")
def strict(make_server, credentials_file):
    return make_server("athena-strict", ["--auth", "strict", "--credentials-file", str(credentials_file)]).start()


@pytest.fixture(scope="module")
def buckets(module_client, strict):
    """Each account's own bucket, made once for the module."""
    names = {}
    for who, name in ((A, "athena-sec-a"), (B, "athena-sec-b")):
        s3 = module_client("s3", strict, access_key=who.key, secret_key=who.secret)
        s3.create_bucket(Bucket=name)
        names[who.account] = name
    return names


@pytest.fixture
def as_(client, strict, buckets):
    def make(who, service="athena"):
        return client(service, srv=strict, access_key=who.key, secret_key=who.secret)

    return make


def output_of(who, buckets) -> str:
    return f"s3://{buckets[who.account]}/results"


def start(athena, sql: str, output: str, database: str = "default") -> str:
    return athena.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Database": database}, ResultConfiguration={"OutputLocation": output}
    )["QueryExecutionId"]


def wait(athena, qid: str) -> dict:
    return wait_for_query(athena, qid)


def refusal(athena, sql: str, output: str) -> str:
    """The InvalidRequestException message StartQueryExecution answers ``sql`` with."""
    with pytest.raises(ClientError) as err:
        start(athena, sql, output)
    assert err.value.response["Error"]["Code"] == "InvalidRequestException", err.value.response
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Message"]


def blocked(athena, sql: str, output: str) -> str:
    """Refused up front, or accepted and FAILED: never SUCCEEDED. The message or failure reason."""
    try:
        qid = start(athena, sql, output)
    except ClientError as err:
        assert err.response["Error"]["Code"] == "InvalidRequestException", err.response
        return err.response["Error"]["Message"]
    execution = wait(athena, qid)
    assert execution["Status"]["State"] == "FAILED", (sql, execution["Status"])
    return execution["Status"]["StateChangeReason"]


def rows_of(athena, qid: str) -> list[list[str | None]]:
    page = athena.get_query_results(QueryExecutionId=qid)
    return [[d.get("VarCharValue") for d in r["Data"]] for r in page["ResultSet"]["Rows"]]


def keys_in(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


# ---------------------------------------------------------------------------
# Host files


def test_host_files_cannot_be_read_through_any_table_function(as_, buckets, credentials_file):
    athena, s3 = as_(A), as_(A, "s3")
    output = output_of(A, buckets)
    before = keys_in(s3, buckets[A.account])
    for path in ("/etc/passwd", str(credentials_file)):
        for sql in (
            f"SELECT * FROM read_text('{path}')",
            f"SELECT * FROM read_blob('{path}')",
            f"SELECT * FROM read_csv('{path}')",
            f"SELECT * FROM read_csv_auto('{path}', header = false)",
            f"SELECT * FROM read_parquet('{path}')",
            f"SELECT * FROM read_json_objects('{path}')",
            f"SELECT * FROM sniff_csv('{path}')",
            f"SELECT * FROM glob('{path}')",
            f"SELECT * FROM '{path}'",
            f'SELECT * FROM "{path}"',
            f"SELECT * FROM TABLE(read_text('{path}'))",
            f"SELECT (SELECT content FROM read_text('{path}')) AS c",
            f"SELECT x.* FROM (VALUES (1)) AS t(a), LATERAL read_text('{path}') AS x",
            # A CTE of the same name must not let the real table function through.
            f"WITH read_text AS (SELECT 1 AS content) SELECT * FROM read_text('{path}')",
            f"SELECT * FROM query('SELECT * FROM read_text(''{path}'')')",
        ):
            reason = blocked(athena, sql, output)
            assert "root:" not in reason and SECRET_MARK not in reason, reason
    # Nothing was written for any of them: no result holds a file's content.
    assert keys_in(s3, buckets[A.account]) == before


def test_engine_settings_and_environment_cannot_be_read(as_, buckets):
    athena = as_(A)
    for sql in (
        "SELECT current_setting('home_directory')",
        "SELECT getenv('HOME')",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM duckdb_secrets()",
        "SELECT * FROM duckdb_extensions()",
        "SELECT * FROM which_secret('s3://x', 's3')",
    ):
        assert "not registered" in blocked(athena, sql, output_of(A, buckets)), sql


# ---------------------------------------------------------------------------
# Writes, extensions, settings: statements that are not read-only queries


def test_copy_and_export_to_host_paths_are_refused_and_write_nothing(as_, buckets, tmp_path):
    athena = as_(A)
    target = tmp_path / "pwned.csv"
    assert "COPY" in refusal(athena, f"COPY (SELECT 1 AS x) TO '{target}'", output_of(A, buckets))
    assert "COPY" in refusal(athena, f"COPY (SELECT 1 AS x) TO '{target}' (FORMAT csv)", output_of(A, buckets))
    assert "EXPORT" in refusal(athena, f"EXPORT DATABASE '{tmp_path / 'dump'}'", output_of(A, buckets))
    assert "INTO" in refusal(athena, "SELECT 1 AS x INTO pwned", output_of(A, buckets))
    assert not target.exists() and not (tmp_path / "dump").exists()


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("LOAD '/tmp/evil.duckdb_extension'", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("SET lock_configuration = false", "SET"),
        ("RESET enable_external_access", "RESET"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("ATTACH '/tmp/athena-pwned.db' AS pwned", "ATTACH"),
        ("CALL pragma_version()", "CALL"),
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("DELETE FROM t", "DELETE"),
        ("CREATE TABLE t2 AS SELECT 1 AS a", "CREATE TABLE AS"),
        ("CREATE VIEW v AS SELECT 1 AS a", "CREATE VIEW"),
        ("CREATE MACRO m() AS 1", "CREATE"),
        ("CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')", "CREATE"),
        ("ALTER TABLE t ADD COLUMNS (b int)", "ALTER"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("DESCRIBE t", "DESCRIBE"),
        ("SHOW TABLES", "SHOW"),
        ("USE other", "USE"),
        ("CHECKPOINT", "CHECKPOINT"),
        ("IMPORT DATABASE '/tmp'", "IMPORT"),
        # A comment in front does not hide the statement's kind (no first-word decisions).
        ("/* a harmless comment */ COPY (SELECT 1) TO '/tmp/athena-pwned.csv'", "COPY"),
        ("-- SELECT\nINSERT INTO t VALUES (1)", "INSERT"),
    ],
)
def test_statements_other_than_queries_and_table_ddl_are_refused(as_, buckets, sql, kind):
    message = refusal(as_(A), sql, output_of(A, buckets))
    assert message.startswith(kind), message


def test_several_statements_in_one_string_are_refused(as_, buckets, tmp_path):
    athena = as_(A)
    for sql in (
        "SELECT 1; SELECT 2",
        f"SELECT 1; COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'",
        "SELECT 1;\nSET enable_external_access = true",
        "SELECT 1 AS a; DROP TABLE t",
    ):
        assert refusal(athena, sql, output_of(A, buckets)).startswith("Only one sql statement is allowed"), sql
    assert not (tmp_path / "x.csv").exists()
    # A trailing semicolon, or one inside a comment or a string, is still one statement.
    qid = start(athena, "SELECT 'a;b' AS s -- ; DROP TABLE t\n;", output_of(A, buckets))
    assert wait(athena, qid)["Status"]["State"] == "SUCCEEDED"
    assert rows_of(athena, qid) == [["s"], ["a;b"]]


def test_sql_that_does_not_parse_fails_like_athena(as_, buckets):
    athena = as_(A)
    execution = wait(athena, start(athena, "SELEC 1", output_of(A, buckets)))
    assert execution["Status"]["State"] == "FAILED"
    assert execution["Status"]["StateChangeReason"].startswith("line 1:"), execution["Status"]


# ---------------------------------------------------------------------------
# Another account's buckets


def test_output_location_must_be_the_callers_bucket(as_, buckets):
    athena, s3_b = as_(A), as_(B, "s3")
    b_bucket = buckets[B.account]
    before = keys_in(s3_b, b_bucket)
    for output in (f"s3://{b_bucket}/stolen", f"s3://{b_bucket}", "s3://athena-sec-no-such-bucket/results"):
        message = refusal(athena, "SELECT 1 AS one", output)
        assert message == f"Unable to verify/create output bucket {output[5:].split('/')[0]}", message
    assert keys_in(s3_b, b_bucket) == before
    # The same query with the caller's own output location runs.
    qid = start(athena, "SELECT 1 AS one", output_of(A, buckets))
    assert wait(athena, qid)["Status"]["State"] == "SUCCEEDED"
    # The other account cannot see the query or its results.
    with pytest.raises(ClientError) as err:
        as_(B).get_query_results(QueryExecutionId=qid)
    assert err.value.response["Error"]["Code"] == "InvalidRequestException"


def test_table_location_must_be_the_callers_bucket(as_, buckets, unique):
    athena, s3_b = as_(A), as_(B, "s3")
    prefix = unique("private")
    s3_b.put_object(Bucket=buckets[B.account], Key=f"{prefix}/part.csv", Body=b"b-secret,1\n")
    table = prefix.replace("-", "_")
    for ddl in (
        f"CREATE EXTERNAL TABLE {table} (s STRING, n BIGINT) ROW FORMAT SERDE "
        f"'org.apache.hadoop.hive.serde2.OpenCSVSerde' LOCATION 's3://{buckets[B.account]}/{prefix}/'",
        f"CREATE EXTERNAL TABLE {table} (s STRING) STORED AS PARQUET LOCATION 's3://{buckets[B.account]}/{prefix}'",
    ):
        message = refusal(athena, ddl, output_of(A, buckets))
        assert "another account" in message and buckets[B.account] in message, message
    assert "does not exist" in blocked(athena, f"SELECT * FROM {table}", output_of(A, buckets))


def test_a_table_whose_bucket_changed_hands_is_not_read(as_, buckets, unique):
    """LOCATION in a bucket that did not exist at CREATE, then made by the other account: checked at use."""
    athena, s3_b = as_(A), as_(B, "s3")
    bucket, table = unique("athena-later"), unique("later").replace("-", "_")
    ddl = wait(
        athena,
        start(
            athena,
            f"CREATE EXTERNAL TABLE {table} (s STRING) ROW FORMAT SERDE "
            f"'org.apache.hadoop.hive.serde2.OpenCSVSerde' LOCATION 's3://{bucket}/data'",
            output_of(A, buckets),
        ),
    )
    assert ddl["Status"]["State"] == "SUCCEEDED", ddl["Status"]
    s3_b.create_bucket(Bucket=bucket)
    s3_b.put_object(Bucket=bucket, Key="data/part.csv", Body=b"b-secret\n")
    reason = blocked(athena, f"SELECT * FROM {table}", output_of(A, buckets))
    assert "b-secret" not in reason and "Access Denied" in reason, reason


def test_a_feature_group_whose_bucket_changed_hands_is_not_read(as_, buckets, unique):
    """The group's own bucket, deleted and made again by the other account: checked when the query reads."""
    sm, athena, s3_a, s3_b = as_(A, "sagemaker"), as_(A), as_(A, "s3"), as_(B, "s3")
    name, bucket = unique("fglater"), unique("athena-fg-later")
    s3_a.create_bucket(Bucket=bucket)
    group = create_group(
        sm,
        name,
        {"id": "String", "et": "Fractional"},
        offline=f"s3://{bucket}/fg",
        RoleArn=f"arn:aws:iam::{A.account}:role/R",
    )
    assert group["FeatureGroupStatus"] == "Created", group
    for key in keys_in(s3_a, bucket):
        s3_a.delete_object(Bucket=bucket, Key=key)
    s3_a.delete_bucket(Bucket=bucket)
    s3_b.create_bucket(Bucket=bucket)
    s3_b.put_object(Bucket=bucket, Key="fg/planted.parquet", Body=b"b-secret")
    table = group["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"]
    reason = blocked(athena, f'SELECT * FROM sagemaker_featurestore."{table}"', output_of(A, buckets))
    assert "Access Denied" in reason and "b-secret" not in reason, reason
    assert keys_in(s3_b, bucket) == {"fg/planted.parquet"}


# ---------------------------------------------------------------------------
# What must still work, per account


def test_feature_store_and_external_tables_still_work_per_account(as_, buckets, unique):
    sm, rt, athena = as_(A, "sagemaker"), as_(A, "sagemaker-featurestore-runtime"), as_(A)
    name = unique("fgsafe")
    group = create_group(
        sm,
        name,
        {"id": "String", "et": "Fractional", "n": "Integral"},
        offline=f"s3://{buckets[A.account]}/fg",
        RoleArn=f"arn:aws:iam::{A.account}:role/R",
    )
    table = group["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"]
    rt.put_record(FeatureGroupName=name, Record=record(id="r1", et=1700000000, n=7))
    qid = start(
        athena,
        f'SELECT id, n FROM "{table}" WHERE NOT is_deleted',
        output_of(A, buckets),
        database="sagemaker_featurestore",
    )
    assert wait(athena, qid)["Status"]["State"] == "SUCCEEDED"
    assert rows_of(athena, qid) == [["id", "n"], ["r1", "7"]]
    # The other account does not see the table at all.
    assert "does not exist" in blocked(as_(B), f'SELECT * FROM sagemaker_featurestore."{table}"', output_of(B, buckets))

    prefix = unique("ext")
    as_(A, "s3").put_object(Bucket=buckets[A.account], Key=f"{prefix}/p.csv", Body=b"x,1\n")
    ext = prefix.replace("-", "_")
    # A column name with a double quote stays a name, never SQL.
    ddl = (
        f'CREATE EXTERNAL TABLE {ext} (`s"x` STRING, n BIGINT) ROW FORMAT SERDE '
        f"'org.apache.hadoop.hive.serde2.OpenCSVSerde' LOCATION 's3://{buckets[A.account]}/{prefix}/'"
    )
    assert wait(athena, start(athena, ddl, output_of(A, buckets)))["Status"]["State"] == "SUCCEEDED"
    qid = start(athena, f"SELECT * FROM {ext}", output_of(A, buckets))
    assert wait(athena, qid)["Status"]["State"] == "SUCCEEDED"
    assert rows_of(athena, qid) == [['s"x', "n"], ["x", "1"]]
    assert wait(athena, start(athena, f"DROP TABLE {ext}", output_of(A, buckets)))["Status"]["State"] == "SUCCEEDED"


# ---------------------------------------------------------------------------
# The second wall alone: the locked DuckDB, as if a statement had slipped past the gate


@pytest.fixture(scope="module")
def locked():
    con = sandboxed_duckdb()
    yield con
    con.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_json_objects('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_csv('https://example.com/x.csv')",
        "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
        "ATTACH '/tmp/athena-sandbox-pwned.db' AS pwned",
        "IMPORT DATABASE '/etc'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "LOAD '/tmp/evil.duckdb_extension'",
        "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')",
        "SELECT getenv('HOME')",
        "SET enable_external_access = true",
        "SET GLOBAL enable_external_access = true",
        "RESET enable_external_access",
        "PRAGMA enable_external_access = true",
        "SET lock_configuration = false",
        "SET GLOBAL lock_configuration = false",
        "SET autoinstall_known_extensions = true",
        "SET autoload_known_extensions = true",
        "SET allow_unsigned_extensions = true",
        "SET python_enable_replacements = true",
        "SET temp_directory = '/tmp'",
        "SET allowed_directories = ['/']",
        "SET TimeZone = 'America/New_York'",
    ],
)
def test_the_locked_duckdb_refuses_on_its_own(locked, sql):
    with pytest.raises(duckdb.Error):
        locked.cursor().execute(sql).fetchall()


def test_the_locked_duckdb_writes_no_host_file(locked, tmp_path):
    for sql in (f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'", f"EXPORT DATABASE '{tmp_path / 'dump'}'"):
        with pytest.raises(duckdb.PermissionException):
            locked.cursor().execute(sql)
    assert list(tmp_path.iterdir()) == []


def test_queries_on_the_shared_database_see_only_their_own_tables():
    sandbox = Sandbox()
    try:
        mine, theirs = sandbox.connect(), sandbox.connect()
        mine.register("__table_0", pa.table({"secret": ["a's row"]}))
        mine.execute('CREATE TEMP VIEW "__table_1" AS SELECT 1 AS x')
        for name in ("__table_0", "__table_1"):
            with pytest.raises(duckdb.CatalogException):
                theirs.execute(f"SELECT * FROM {name}")
        assert mine.execute("SELECT * FROM __table_0").fetchall() == [("a's row",)]
        # A table a query registered is gone with its connection; a Python variable is never a table.
        mine.close()
        secret_frame = pa.table({"x": [1]})  # noqa: F841  (what a replacement scan would find)
        with pytest.raises(duckdb.CatalogException):
            sandbox.connect().execute("SELECT * FROM secret_frame")
        assert theirs.execute("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
    finally:
        sandbox.close()
