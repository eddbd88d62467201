"""Create a feature group, ingest a DataFrame, read records online and query the offline store with Athena
(SageMaker SDK v3).

    eval "$(selfmaker env --write-sdk-config)"
    python examples/feature_store_v3.py

The v2 version is feature_store.py. In v3 the feature store lives in sagemaker.mlops.feature_store: the
FeatureGroup resource class, and functions to ingest a DataFrame and to query the offline store.
"""

import time

import numpy as np
import pandas as pd
from sagemaker.core.helper.session_helper import Session
from sagemaker.mlops.feature_store import (
    FeatureGroup,
    OfflineStoreConfig,
    OnlineStoreConfig,
    S3StorageConfig,
    create_athena_query,
    ingest_dataframe,
    load_feature_definitions_from_dataframe,
)

session = Session()
bucket = session.default_bucket()
role = session.sagemaker_config["SageMaker"]["FeatureGroup"]["RoleArn"]
name = f"example-customers-v3-{int(time.time())}"
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

group = FeatureGroup.create(
    feature_group_name=name,
    record_identifier_feature_name="customer_id",
    event_time_feature_name="event_time",
    feature_definitions=load_feature_definitions_from_dataframe(customers),
    online_store_config=OnlineStoreConfig(enable_online_store=True),
    offline_store_config=OfflineStoreConfig(
        s3_storage_config=S3StorageConfig(s3_uri=f"s3://{bucket}/examples/feature-store-v3")
    ),
    role_arn=role,
)
group.wait_for_status(target_status="Created", poll=1, timeout=120)
print("feature group", name, group.feature_group_status)

ingest_dataframe(feature_group_name=name, data_frame=customers, max_workers=2, wait=True)
record = group.get_record(record_identifier_value_as_string="c42")
print("online c42:", {feature.feature_name: feature.value_as_string for feature in record.record})

query = create_athena_query(name, session)
query.run(
    f"SELECT city, count(*) AS customers, round(avg(spend), 2) AS avg_spend "
    f'FROM "{query.table_name}" GROUP BY city ORDER BY city',
    output_location=f"s3://{bucket}/examples/athena",
)
query.wait()
by_city = query.as_dataframe()
print("offline, by city:")
print(by_city.to_string(index=False))
if int(by_city["customers"].sum()) != n:
    raise SystemExit(f"the offline store holds {int(by_city['customers'].sum())} records, not {n}")
