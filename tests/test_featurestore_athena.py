"""The Athena subset over the offline store, through boto3."""

from __future__ import annotations

import pytest

from support.featurestore import BUCKET, create_group, ensure_bucket, error_of, record, wait_for_query

OUTPUT = f"s3://{BUCKET}/athena-results"


@pytest.fixture
def athena(client):
    ensure_bucket(client("s3"))
    return client("athena")


def run(athena, sql: str, database: str = "sagemaker_featurestore") -> dict:
    qid = athena.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Database": database}, ResultConfiguration={"OutputLocation": OUTPUT}
    )["QueryExecutionId"]
    return wait_for_query(athena, qid)


def rows_of(athena, qid: str, page_size: int = 1000) -> list[list[str | None]]:
    rows, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = athena.get_query_results(QueryExecutionId=qid, MaxResults=page_size, **kw)
        rows += [[d.get("VarCharValue") for d in r["Data"]] for r in page["ResultSet"]["Rows"]]
        token = page.get("NextToken")
        if not token:
            return rows


def test_query_the_offline_store(sm, client, athena, unique):
    rt = client("sagemaker-featurestore-runtime")
    name = unique("fgathena")
    d = create_group(
        sm,
        name,
        {"id": "String", "et": "Fractional", "n": "Integral", "note": "String"},
        offline=f"s3://{BUCKET}/athena",
    )
    table = d["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"]
    for i in range(5):
        rt.put_record(FeatureGroupName=name, Record=record(id=f"r{i}", et=1700000000 + i, n=i * 10, note=f"n,{i}"))
    rt.put_record(FeatureGroupName=name, Record=record(id="r9", et=1700000009))  # nulls
    rt.delete_record(FeatureGroupName=name, RecordIdentifierValueAsString="r0", EventTime="1700000100")

    execution = run(
        athena, f'SELECT id, n, note, from_unixtime(et) AS at FROM "{table}" WHERE NOT is_deleted ORDER BY id'
    )
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    assert execution["ResultConfiguration"]["OutputLocation"] == f"{OUTPUT}/{execution['QueryExecutionId']}.csv"
    assert execution["StatementType"] == "DML"
    rows = rows_of(athena, execution["QueryExecutionId"], page_size=2)
    assert rows[0] == ["id", "n", "note", "at"]
    assert rows[1] == ["r0", "0", "n,0", "2023-11-14 22:13:20.000 UTC"]
    assert [r[0] for r in rows[1:]] == ["r0", "r1", "r2", "r3", "r4", "r9"]
    assert rows[-1] == ["r9", None, None, "2023-11-14 22:13:29.000 UTC"]
    results = athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"])
    assert [(c["Name"], c["Type"]) for c in results["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]] == [
        ("id", "varchar"),
        ("n", "bigint"),
        ("note", "varchar"),
        ("at", "timestamp with time zone"),
    ]

    # The CSV is where Athena would write it, quoted as Athena quotes it.
    s3 = client("s3")
    csv_text = s3.get_object(Bucket=BUCKET, Key=f"athena-results/{execution['QueryExecutionId']}.csv")["Body"].read()
    assert csv_text.decode().splitlines()[:2] == [
        '"id","n","note","at"',
        '"r0","0","n,0","2023-11-14 22:13:20.000 UTC"',
    ]

    # The dedup contract: the latest row per record, deletes excluded.
    latest = run(
        athena,
        f"""
        SELECT id FROM (
          SELECT *, row_number() OVER (PARTITION BY id ORDER BY et DESC, api_invocation_time DESC,
                                       write_time DESC) AS rn
          FROM sagemaker_featurestore."{table}")
        WHERE rn = 1 AND NOT is_deleted ORDER BY id""",
    )
    assert [r[0] for r in rows_of(athena, latest["QueryExecutionId"])[1:]] == ["r1", "r2", "r3", "r4", "r9"]


def test_failures_and_states(athena):
    failed = run(athena, "SELECT * FROM no_such_table")
    assert failed["Status"]["State"] == "FAILED"
    assert "no_such_table" in failed["Status"]["StateChangeReason"]
    assert (
        error_of(athena.get_query_results, QueryExecutionId=failed["QueryExecutionId"])[0] == "InvalidRequestException"
    )
    assert run(athena, "SELEC 1")["Status"]["State"] == "FAILED"
    assert error_of(athena.start_query_execution, QueryString="SELECT 1") == ("InvalidRequestException", 400)
    assert error_of(athena.get_query_execution, QueryExecutionId="nope")[0] == "InvalidRequestException"
    done = run(athena, "SELECT 1 AS one")
    athena.stop_query_execution(QueryExecutionId=done["QueryExecutionId"])  # finished: stopping changes nothing
    assert (
        athena.get_query_execution(QueryExecutionId=done["QueryExecutionId"])["QueryExecution"]["Status"]["State"]
        == "SUCCEEDED"
    )


def test_external_csv_table(client, athena, unique):
    s3 = client("s3")
    prefix = unique("ext")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/part1.csv", Body=b"1,`a,b`,1.5\n2,plain,\n")
    table = prefix.replace("-", "_")
    ddl = run(
        athena,
        f"CREATE EXTERNAL TABLE {table} (k BIGINT, s STRING, x DOUBLE) ROW FORMAT SERDE "
        "'org.apache.hadoop.hive.serde2.OpenCSVSerde' WITH SERDEPROPERTIES "
        '("separatorChar" = ",", "quoteChar" = "`", "escapeChar" = "\\\\") '
        f"LOCATION 's3://{BUCKET}/{prefix}';",
        database="sagemaker_featurestore",
    )
    assert (ddl["Status"]["State"], ddl["StatementType"]) == ("SUCCEEDED", "DDL"), ddl["Status"]
    result = run(athena, f"SELECT k, s, x * 2 AS y FROM sagemaker_featurestore.{table} ORDER BY k")
    assert rows_of(athena, result["QueryExecutionId"]) == [["k", "s", "y"], ["1", "a,b", "3.0"], ["2", "plain", None]]
    assert run(athena, f"DROP TABLE {table}", database="sagemaker_featurestore")["Status"]["State"] == "SUCCEEDED"
    assert run(athena, f"SELECT * FROM sagemaker_featurestore.{table}")["Status"]["State"] == "FAILED"
