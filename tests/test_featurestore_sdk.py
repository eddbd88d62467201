"""The SageMaker Python SDK's feature store against SelfMaker: v2 FeatureGroup, ingest, Athena, datasets; v3."""

from __future__ import annotations

V2_INGEST = r"""
import json, time
import numpy as np, pandas as pd
import sagemaker
from sagemaker.feature_store.feature_group import FeatureGroup
from sagemaker.feature_store.inputs import DeletionModeEnum

session = sagemaker.Session()
bucket = session.default_bucket()
name = "sdk-v2-ingest-" + str(int(time.time() * 1000))
n = 10_000
df = pd.DataFrame({
    "customer_id": pd.Series([f"c{i}" for i in range(n)], dtype="object"),  # pandas 3 would infer "str"
    "event_time": np.full(n, 1700000000.0) + np.arange(n),
    "age": np.arange(n, dtype="int64") % 90,
    "score": np.arange(n) / 7.0,
    "city": pd.Series([f"city-{i % 13}" for i in range(n)], dtype="object"),
})
fg = FeatureGroup(name=name, sagemaker_session=session)
fg.load_feature_definitions(data_frame=df)
fg.create(s3_uri=f"s3://{bucket}/feature-store", record_identifier_name="customer_id",
          event_time_feature_name="event_time", role_arn="arn:aws:iam::123456789012:role/SageMakerRole",
          enable_online_store=True)
while fg.describe()["FeatureGroupStatus"] == "Creating":
    time.sleep(0.2)
described = fg.describe()
started = time.time()
fg.ingest(data_frame=df, max_workers=4, wait=True)
ingest_seconds = time.time() - started

sample = [0, 1, 4321, n - 1]
records = {i: fg.get_record(record_identifier_value_as_string=f"c{i}") for i in sample}
fg.delete_record(record_identifier_value_as_string="c1", event_time="1800000000",
                 deletion_mode=DeletionModeEnum.SOFT_DELETE)
after_delete = fg.get_record(record_identifier_value_as_string="c1")

query = fg.athena_query()
query.run(query_string=f'SELECT count(*) AS n, count(DISTINCT customer_id) AS ids, sum(CASE WHEN is_deleted THEN 1 ELSE 0 END) AS deleted FROM "{query.table_name}"',
          output_location=f"s3://{bucket}/athena")
query.wait()
counts = query.as_dataframe().to_dict("records")[0]
print(json.dumps({
    "status": described["FeatureGroupStatus"], "types": {d["FeatureName"]: d["FeatureType"] for d in described["FeatureDefinitions"]},
    "records": {str(k): v for k, v in records.items()}, "after_delete": after_delete,
    "counts": {k: int(v) for k, v in counts.items()}, "ingest_seconds": ingest_seconds,
    "expected": {str(i): {"customer_id": f"c{i}", "event_time": str(1700000000.0 + i), "age": str(i % 90),
                          "score": str(i / 7.0), "city": f"city-{i % 13}"} for i in sample},
}))
"""


def test_sdk_v2_ingest_get_delete_and_athena_query(server, sdk_v2):
    out = sdk_v2.run(server, V2_INGEST, timeout=600)
    assert out["status"] == "Created"
    assert out["types"] == {
        "customer_id": "String",
        "event_time": "Fractional",
        "age": "Integral",
        "score": "Fractional",
        "city": "String",
    }
    for i, rec in out["records"].items():
        assert {f["FeatureName"]: f["ValueAsString"] for f in rec} == out["expected"][i]
    assert out["after_delete"] is None
    # 10,000 rows plus one delete marker, all in the offline store.
    assert out["counts"] == {"n": 10_001, "ids": 10_000, "deleted": 1}


V2_DATASET = r"""
import json, time
import pandas as pd
import sagemaker
import boto3
from sagemaker.feature_store.feature_group import FeatureGroup
from sagemaker.feature_store.feature_store import FeatureStore
from sagemaker.feature_store.inputs import FeatureValue

session = sagemaker.Session()
bucket = session.default_bucket()
name = "sdk-v2-pit-" + str(int(time.time() * 1000))
fg = FeatureGroup(name=name, sagemaker_session=session)
events = pd.DataFrame({"customer_id": pd.Series(["c1"], dtype="object"), "event_time": [100.0], "spend": [1.0]})
fg.load_feature_definitions(data_frame=events)
fg.create(s3_uri=f"s3://{bucket}/pit", record_identifier_name="customer_id", event_time_feature_name="event_time",
          role_arn="arn:aws:iam::123456789012:role/SageMakerRole", enable_online_store=True)
while fg.describe()["FeatureGroupStatus"] == "Creating":
    time.sleep(0.2)

def put(cid, t, spend):
    fg.put_record([FeatureValue(feature_name="customer_id", value_as_string=cid),
                   FeatureValue(feature_name="event_time", value_as_string=str(t)),
                   FeatureValue(feature_name="spend", value_as_string=str(spend))])

put("c1", 100.0, 1.0)
put("c1", 200.0, 2.0)
put("c1", 300.0, 3.0)
put("c1", 150.0, 15.0)    # late: arrives after t=300, belongs between 100 and 200
put("c1", 200.0, 22.0)    # the same event again, later: the later write wins
put("c2", 50.0, 5.0)
fg.delete_record(record_identifier_value_as_string="c2", event_time="250")  # c2 deleted at t=250
put("c3", 350.0, 7.0)

base = pd.DataFrame({"customer_id": pd.Series(["c1", "c1", "c1", "c2", "c3"], dtype="object"),
                     "event_time": [160.0, 250.0, 50.0, 300.0, 400.0]})
builder = (FeatureStore(sagemaker_session=session)
           .create_dataset(base=base, output_path=f"s3://{bucket}/datasets", record_identifier_feature_name="customer_id",
                           event_time_identifier_feature_name="event_time")
           .with_feature_group(fg, target_feature_name_in_base="customer_id", included_feature_names=["customer_id", "event_time", "spend"])
           .point_in_time_accurate_join())
df, query = builder.to_dataframe()
rows = sorted(map(tuple, df[["customer_id", "event_time", "spend.1", "event_time.1"]].astype(str).values.tolist()))
print(json.dumps({"rows": rows, "columns": list(df.columns)}))
"""


def test_sdk_v2_point_in_time_dataset(server, sdk_v2):
    out = sdk_v2.run(server, V2_DATASET, timeout=300)
    assert out["columns"] == ["customer_id", "event_time", "customer_id.1", "event_time.1", "spend.1"]
    # A point-in-time join pairs each base row with every feature row at or before it (latest first in the
    # SDK's row_recent order): the late event (150) counts from t=160 on, the repeated event (200) only with its
    # later value, (c1, 50) has nothing before it, and c2's only event is older than its deletion.
    assert out["rows"] == [
        ["c1", "160.0", "1.0", "100.0"],
        ["c1", "160.0", "15.0", "150.0"],
        ["c1", "250.0", "1.0", "100.0"],
        ["c1", "250.0", "15.0", "150.0"],
        ["c1", "250.0", "22.0", "200.0"],
        ["c3", "400.0", "7.0", "350.0"],
    ]


V3 = r"""
import json, time
import boto3
import numpy as np, pandas as pd
from sagemaker.core.helper.session_helper import Session
from sagemaker.mlops.feature_store import (FeatureGroup, OfflineStoreConfig, OnlineStoreConfig, S3StorageConfig,
                                           create_athena_query, ingest_dataframe,
                                           load_feature_definitions_from_dataframe)

bucket = "selfmaker-sdk-tests"
try:
    boto3.client("s3").create_bucket(Bucket=bucket)
except Exception:
    pass
name = "sdk-v3-fg-" + str(int(time.time() * 1000))
n = 500
df = pd.DataFrame({
    "id": pd.Series([f"r{i}" for i in range(n)], dtype="object"),
    "et": np.full(n, 1700000000.0) + np.arange(n),
    "count": np.arange(n, dtype="int64"),
    "ratio": np.arange(n) / 4.0,
})
fg = FeatureGroup.create(
    feature_group_name=name, record_identifier_feature_name="id", event_time_feature_name="et",
    feature_definitions=load_feature_definitions_from_dataframe(df),
    online_store_config=OnlineStoreConfig(enable_online_store=True),
    offline_store_config=OfflineStoreConfig(s3_storage_config=S3StorageConfig(s3_uri=f"s3://{bucket}/v3")),
    role_arn="arn:aws:iam::123456789012:role/SageMakerRole")
fg.wait_for_status(target_status="Created", poll=1, timeout=60)
manager = ingest_dataframe(feature_group_name=name, data_frame=df, max_workers=3, wait=True)
got = fg.get_record(record_identifier_value_as_string="r7")
batch = fg.batch_get_record(identifiers=[{"feature_group_name": name, "record_identifiers_value_as_string": ["r1", "r499"]}])
fg.delete_record(record_identifier_value_as_string="r7", event_time="1800000000", deletion_mode="HardDelete")
gone = fg.get_record(record_identifier_value_as_string="r7")
described = FeatureGroup.get(feature_group_name=name)
query = create_athena_query(name, Session())
query.run(f'SELECT count(*) AS n FROM "{query.table_name}"', output_location=f"s3://{bucket}/v3-athena")
query.wait()
print(json.dumps({
    "record": {f.feature_name: f.value_as_string for f in got.record},
    "batch": sorted(r.record_identifier_value_as_string for r in batch.records),
    "gone": not isinstance(getattr(gone, "record", None), list),
    "status": described.feature_group_status,
    "table": described.offline_store_config.data_catalog_config.table_name,
    "count": int(query.as_dataframe()["n"][0]),
}, default=str))
"""


def test_sdk_v3_create_ingest_get_delete_and_athena(server, sdk_v3):
    out = sdk_v3.run(server, V3, timeout=300)
    assert out["record"] == {"id": "r7", "et": "1700000007.0", "count": "7", "ratio": "1.75"}
    assert out["batch"] == ["r1", "r499"]
    assert out["gone"] is True
    assert out["status"] == "Created"
    assert out["count"] == 501  # 500 rows and the hard delete's marker
