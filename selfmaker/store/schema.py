"""The tables. Change them only together with a new Alembic migration (store/migrations)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

# Every named SageMaker resource, of every kind: one table, one mechanism (docs/design.md, principle 2).
# `data` holds the resource as its Describe operation returns it (timestamps as epoch seconds);
# the other columns are the ones lists filter and sort on, so those stay index scans.
resources = Table(
    "resources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("arn", String(512), nullable=False, unique=True),
    Column("name", String(256), nullable=False),
    Column("name_key", String(256), nullable=False),  # lower-cased name: AWS names are case-insensitive
    Column("parent", String(256)),  # e.g. the model package group of a version
    Column("status", String(64)),
    Column("created_at", Float, nullable=False),
    Column("modified_at", Float, nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_resources_name", "account_id", "region", "kind", "name_key", unique=True),
    Index("ix_resources_created", "account_id", "region", "kind", "created_at", "id"),
    Index("ix_resources_modified", "account_id", "region", "kind", "modified_at", "id"),
    Index("ix_resources_status", "account_id", "region", "kind", "status"),
    Index("ix_resources_parent", "account_id", "region", "kind", "parent"),
)

# Tags on any ARN, ours or not (AddTags/ListTags/DeleteTags).
tags = Table(
    "tags",
    metadata,
    Column("arn", String(512), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
    Column("position", Integer, nullable=False),  # ListTags returns tags in the order they were added
)

# Server-wide secrets and settings that must survive restarts (e.g. the pagination-token key).
server_state = Table(
    "server_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

# Several servers on one PostgreSQL (docs/scale-out.md): each live server's heartbeat, and which server drives
# each reconciled record or singleton worker. A lease is valid while its owner's heartbeat is; ``token`` grows
# at every takeover, and a controller's writes check (owner, token) in their own transaction (store/fencing.py).
servers = Table(
    "servers",
    metadata,
    Column("id", String(128), primary_key=True),  # one per server process: never reused
    Column("node", String(512), nullable=False),  # host and data directory, for people reading the table
    Column("started_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),  # the database's clock, so servers' clocks may disagree
)

leases = Table(
    "leases",
    metadata,
    Column("key", String(600), primary_key=True),  # a record's ARN, a table controller's key, "worker:<name>"
    Column("owner", String(128), nullable=False, index=True),
    Column("token", BigInteger, nullable=False),
)

# Which record holds a workload's access key (services/jobs/credentials.py): a server that did not start the job or
# endpoint finds the record by the key, and the record (its private ``_credentials``) says whether it is valid.
workload_keys = Table(
    "workload_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("owner_arn", String(512), nullable=False, index=True),
)

# CloudWatch Logs: groups, streams and events (jobs and endpoints write here; see selfmaker/aws/logs/).
# Times are epoch milliseconds, as the Logs API speaks them.
log_groups = Table(
    "log_groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(512), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("retention_days", Integer),
    Column("log_group_class", String(32), nullable=False, default="STANDARD"),
    Index("ix_log_groups_name", "account_id", "region", "name", unique=True),
)

log_streams = Table(
    "log_streams",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("group_id", Integer, nullable=False),
    Column("name", String(512), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("first_event_ms", BigInteger),
    Column("last_event_ms", BigInteger),
    Column("last_ingested_ms", BigInteger),
    Column("stored_bytes", BigInteger, nullable=False, default=0),
    Index("ix_log_streams_name", "group_id", "name", unique=True),
)

# group_id is denormalised from the stream so FilterLogEvents can walk a whole group in time order.
log_events = Table(
    "log_events",
    metadata,
    # Ingestion order. 64-bit where the database allows (SQLite's rowid already is; BIGINT would not alias it).
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("group_id", Integer, nullable=False),
    Column("stream_id", Integer, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("ingested_ms", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_log_events_stream", "stream_id", "timestamp", "id"),  # GetLogEvents
    Index("ix_log_events_stream_seq", "stream_id", "id"),  # following a stream as it is written
    Index("ix_log_events_group", "group_id", "timestamp", "id"),  # FilterLogEvents
)

# Experiments (selfmaker/services/experiments.py, experiment_metrics.py).
# Which trial components belong to which trials: a component may be in several. The experiment is
# denormalised from the trial (a trial never changes experiment) so "the components of an experiment"
# is one indexed lookup; the names are kept for Search's Parents.
trial_component_links = Table(
    "trial_component_links",
    metadata,
    Column("trial_arn", String(512), primary_key=True),
    Column("component_arn", String(512), primary_key=True),
    Column("experiment_arn", String(512), nullable=False),
    Column("trial_name", String(256), nullable=False),
    Column("experiment_name", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_trial_component_links_component", "component_arn"),
    Index("ix_trial_component_links_experiment", "experiment_arn"),
)

# One row per (trial component, metric name): the running summary DescribeTrialComponent returns,
# folded in point by point (Welford: n, mean, m2 = sum of squared deviations) so it costs O(#metrics).
metric_series = Table(
    "metric_series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("component_arn", String(512), nullable=False),
    Column("metric_name", String(255), nullable=False),
    Column("source_arn", String(512)),
    Column("n", BigInteger, nullable=False),
    Column("mean", Float, nullable=False),
    Column("m2", Float, nullable=False),
    Column("minimum", Float, nullable=False),
    Column("maximum", Float, nullable=False),
    Column("last_value", Float, nullable=False),
    Column("last_timestamp", Float, nullable=False),
    Index("ix_metric_series_name", "component_arn", "metric_name", unique=True),
)

# The raw points of each series, for BatchGetMetrics. Timestamps are epoch seconds.
metric_points = Table(
    "metric_points",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),  # arrival order breaks timestamp ties
    Column("series_id", Integer, nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("step", BigInteger),
    Column("value", Float, nullable=False),
    Index("ix_metric_points_series", "series_id", "timestamp", "id"),
)

# ML Lineage (selfmaker/services/lineage.py): associations, the directed edges between lineage entities.
# An edge is identified by its two ends and indexed from both, so QueryLineage expands a whole frontier
# in either direction with index lookups. The entity types are copied in (they never change after
# creation) so ListAssociations filters and sorts on them without a join; '' stands for "no type".
associations = Table(
    "associations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("source_arn", String(256), nullable=False),
    Column("destination_arn", String(256), nullable=False),
    Column("source_type", String(256), nullable=False),
    Column("destination_type", String(256), nullable=False),
    Column("association_type", String(32)),
    Column("created_at", Float, nullable=False),
    Column("created_by", JSON),
    Index("ix_associations_edge", "source_arn", "destination_arn", unique=True),  # also: edges out of a vertex
    Index("ix_associations_destination", "destination_arn"),  # edges into a vertex
    Index("ix_associations_created", "account_id", "region", "created_at", "id"),
)

# S3 buckets (selfmaker/objects/ownership.py): the account that created each one. The object store holds
# the bucket itself; a bucket with no row here (made directly through the store) is the default account's.
buckets = Table(
    "buckets",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
)

# -- Athena (selfmaker/aws/athena.py) ---------------------------------------------------------------------
# Query executions: `data` holds the QueryExecution as GetQueryExecution returns it; `state` is its Status.State
# (QUEUED and RUNNING rows are run again after a restart).
athena_queries = Table(
    "athena_queries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_athena_queries_state", "state"),
)

# Tables that CREATE EXTERNAL TABLE registered (feature groups' tables come from their DataCatalogConfig).
# `data`: location, format (csv | parquet), columns [[name, type]], and the serde's csv properties.
athena_tables = Table(
    "athena_tables",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("catalog", String(256), primary_key=True),
    Column("database", String(256), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("data", JSON, nullable=False),
)

# -- Pipelines (selfmaker/services/pipelines) ---------------------------------------------------------------
# Pipelines and their executions are named resources (kinds Pipeline and PipelineExecution); these hold the rest.
# Every Create/UpdatePipeline makes an immutable version: executions run, and describe, the one they started with.
pipeline_versions = Table(
    "pipeline_versions",
    metadata,
    Column("pipeline_arn", String(512), primary_key=True),
    Column("version_id", BigInteger, primary_key=True),
    Column("definition", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("display_name", String(82)),
    Column("description", String(3072)),
    Column("last_execution_arn", String(2048)),
)

# Callback steps waiting for SendPipelineExecutionStepSuccess/Failure: the token names the execution's step.
pipeline_callbacks = Table(
    "pipeline_callbacks",
    metadata,
    Column("token", String(10), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("execution_arn", String(2048), nullable=False),
    Column("step_name", String(256), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16)),  # Succeeded | Failed once answered
    Column("output", JSON),  # OutputParameters, or {"FailureReason": ...}
)

# Successful steps with CacheConfig, by the digest of their resolved arguments: a later step with the same
# digest within its ExpireAfter reuses the result. `result`: the step's saved state (metadata, ARNs).
pipeline_step_cache = Table(
    "pipeline_step_cache",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline_arn", String(512), nullable=False),
    Column("step_name", String(256), nullable=False),
    Column("cache_key", String(128), nullable=False),
    Column("execution_arn", String(2048), nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("result", JSON, nullable=False),
    Index("ix_pipeline_step_cache_key", "pipeline_arn", "step_name", "cache_key", "finished_at"),
)

# -- SQS (selfmaker/aws/sqs/) ---------------------------------------------------------------------------------
# Queues, by account, region and name. `attributes` holds the settable attributes (VisibilityTimeout, ...).
sqs_queues = Table(
    "sqs_queues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(80), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("modified_at", Float, nullable=False),
    Column("attributes", JSON, nullable=False),  # tags are in `tags`, by the queue's ARN
    Index("ix_sqs_queues_name", "account_id", "region", "name", unique=True),
)

# Messages. A message is receivable when visible_at <= now; receiving moves visible_at forward by the
# visibility timeout and draws a new receipt nonce (so only the latest receipt handle changes visibility).
sqs_messages = Table(
    "sqs_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("queue_id", Integer, nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("body", Text, nullable=False),
    Column("attributes", JSON),  # MessageAttributes as sent
    Column("sender_id", String(128), nullable=False),
    Column("sent_at", Float, nullable=False),
    Column("visible_at", Float, nullable=False),
    Column("receive_count", Integer, nullable=False, default=0),
    Column("first_received_at", Float),
    Column("receipt_nonce", String(32)),
    Index("ix_sqs_messages_visible", "queue_id", "visible_at", "id"),
)

# -- CloudWatch metrics and alarms (selfmaker/aws/cloudwatch/) ---------------------------------------------
# A metric: namespace, name and its exact set of dimensions (`dimensions_key`: a digest of them, sorted).
# `totals` holds the all-time {unit: [sample count, sum]} that the Prometheus exposition reports.
cw_metrics = Table(
    "cw_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("namespace", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("dimensions_key", String(64), nullable=False),
    Column("dimensions", JSON, nullable=False),  # [[name, value], ...] sorted by name
    Column("totals", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_cw_metrics_key", "account_id", "region", "namespace", "name", "dimensions_key", unique=True),
)

# Statistic sets per metric, unit and second (epoch seconds), with their values' distribution; several
# rows may share a second. Older data is rolled up to coarser resolutions, as CloudWatch keeps it
# (metric_store.RESOLUTIONS).
cw_datapoints = Table(
    "cw_datapoints",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("metric_id", Integer, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("unit", String(32), nullable=False),
    Column("sample_count", Float, nullable=False),
    Column("sum", Float, nullable=False),
    Column("minimum", Float, nullable=False),
    Column("maximum", Float, nullable=False),
    # {log-scaled bucket: count} of the values (metric_store/distribution.py), for percentiles; NULL when
    # only a statistic set of several values was sent (CloudWatch has no percentiles of those either).
    Column("distribution", JSON),
    Index("ix_cw_datapoints_metric", "metric_id", "timestamp"),
    Index("ix_cw_datapoints_time", "timestamp"),  # the roll-up of old data scans by time
)

# Metric alarms: `data` holds the MetricAlarm as DescribeAlarms returns it; `state` is its StateValue.
cw_alarms = Table(
    "cw_alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    Column("state", String(32), nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_cw_alarms_name", "account_id", "region", "name", unique=True),
)

# -- EventBridge (selfmaker/aws/events/) ------------------------------------------------------------------
# Custom event buses (the account's "default" bus always exists and is not stored).
events_buses = Table(
    "events_buses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(256), nullable=False),
    Column("description", String(512)),
    Column("created_at", Float, nullable=False),
    Index("ix_events_buses_name", "account_id", "region", "name", unique=True),
)

# Rules: `pattern` is the EventPattern text as put (checked by aws/events/pattern.py); `data` the rest
# of what DescribeRule returns (Description, RoleArn).
events_rules = Table(
    "events_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("bus", String(256), nullable=False),
    Column("name", String(64), nullable=False),
    Column("state", String(64), nullable=False),
    Column("pattern", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_events_rules_name", "account_id", "region", "bus", "name", unique=True),
)

# A rule's targets, as PutTargets gave them (`spec`); `arn` is indexed for ListRuleNamesByTarget.
events_targets = Table(
    "events_targets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", Integer, nullable=False),
    Column("target_id", String(64), nullable=False),
    Column("arn", String(1600), nullable=False),
    Column("spec", JSON, nullable=False),
    Index("ix_events_targets_id", "rule_id", "target_id", unique=True),
    Index("ix_events_targets_arn", "arn"),
)

# The outbox: events put (PutEvents) or emitted (SageMaker's state changes, in the transaction of the change)
# and not yet matched against the bus's rules. The delivery worker turns each into its deliveries.
events_outbox = Table(
    "events_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("bus", String(256), nullable=False),
    Column("event", Text, nullable=False),  # the event's JSON, as targets receive it
    Column("created_at", Float, nullable=False),
)

# One event to one target of one matching rule, until it is delivered (then deleted) or given up.
events_deliveries = Table(
    "events_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("rule_arn", String(1600), nullable=False),
    Column("target", JSON, nullable=False),  # the target's spec as it was when the event matched
    Column("event", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_events_deliveries_due", "next_at", "id"),
)
