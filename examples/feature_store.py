"""Create a feature group, ingest a DataFrame, read records online and query the offline store with Athena
(SageMaker SDK v2).

    eval "$(selfmaker env --write-sdk-config)"
    python examples/feature_store.py

The online store answers GetRecord at once; the offline store keeps every record as Parquet in the default
bucket, and Athena SQL runs on it (DuckDB inside SelfMaker). Look records up in the web console (Feature Store).
"""

import time

import numpy as np
import pandas as pd
from sagemaker.feature_store.feature_group import FeatureGroup
from sagemaker.session import Session

session = Session()
bucket = session.default_bucket()
name = f"example-customers-{int(time.time())}"
n = 500
customers = pd.DataFrame(
    {
        "customer_id": pd.Series([f"c{i}" for i in range(n)], dtype="object"),  # object: the SDK maps it to String
        "event_time": np.full(n, time.time()),
        "age": (np.arange(n) % 60 + 18).astype("int64"),
        "spend": np.round(np.arange(n) * 1.5, 2),
        "city": pd.Series([["Lisbon", "Oslo", "Quito"][i % 3] for i in range(n)], dtype="object"),
    }
)

group = FeatureGroup(name=name, sagemaker_session=session)
group.load_feature_definitions(data_frame=customers)  # String, Integral, Fractional from the dtypes
group.create(
    s3_uri=f"s3://{bucket}/examples/feature-store",
    record_identifier_name="customer_id",
    event_time_feature_name="event_time",
    enable_online_store=True,
)  # role from the SDK config
while group.describe()["FeatureGroupStatus"] == "Creating":
    time.sleep(0.5)
print("feature group", name, group.describe()["FeatureGroupStatus"])

group.ingest(data_frame=customers, max_workers=2, wait=True)
record = group.get_record(record_identifier_value_as_string="c42")
print("online c42:", {feature["FeatureName"]: feature["ValueAsString"] for feature in record})

query = group.athena_query()
query.run(
    query_string=f"SELECT city, count(*) AS customers, round(avg(spend), 2) AS avg_spend "
    f'FROM "{query.table_name}" GROUP BY city ORDER BY city',
    output_location=f"s3://{bucket}/examples/athena",
)
query.wait()
by_city = query.as_dataframe()
print("offline, by city:")
print(by_city.to_string(index=False))
if int(by_city["customers"].sum()) != n:
    raise SystemExit(f"the offline store holds {int(by_city['customers'].sum())} records, not {n}")
