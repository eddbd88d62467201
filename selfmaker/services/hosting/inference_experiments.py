"""Inference experiments (shadow tests): a candidate model beside production, on a copy of live traffic.

CreateInferenceExperiment checks the request against the endpoint and records the experiment;
the controller below then moves it through

    Creating -> Created -> Starting -> Running -> Stopping -> Completed | Cancelled
                (UpdateInferenceExperiment shows Updating on the way back to Created or Running)

Nothing here serves a request: the experiment drives the endpoint through the endpoint's own
machinery (endpoints.py, deployments.py), so production never fails a request meanwhile.

- Starting snapshots the endpoint's serving release (``_before``), writes a real EndpointConfig
  (one production variant, one shadow variant whose weight is its SamplingPercentage, data capture
  from DataStorageConfig) and calls UpdateEndpoint with it: a blue/green deployment.
- Running keeps the shadow's sampling share equal to the experiment's (UpdateInferenceExperiment
  changes it in place) and stops the experiment at Schedule.EndTime.
- Stopping deploys what ModelVariantActions ask for: Promote writes a configuration in which the
  shadow's model replaces the production variant (instances: DesiredModelVariants, else production's)
  and calls UpdateEndpoint; Remove restores the ``_before`` release (endpoints.restore); Retain leaves
  the endpoint as it is.

Each step is idempotent and every decision is in the record, so a restarted server resumes
where it was: a deployment is recognised as already asked for by the configuration the endpoint
serves or deploys.
"""

from __future__ import annotations

import copy
import hashlib
import logging

from sqlalchemy import select

from ...backends import Backends
from ...engines.model_server import ModelDataError, container_of
from ...engines.reconciler import Controller, kick, register
from ...objects.access import check_s3_uri
from ...server.errors import AWSError, conflict, in_use, validation
from ...server.operations import Context, operation
from ...store import schema
from ...store.resources import Record, now
from ..catalog import MODEL
from ..kinds import Kind
from . import endpoint_configs
from .endpoint_configs import ENDPOINT_CONFIG
from .endpoints import ENDPOINT, restore, set_shadow_weight

log = logging.getLogger("selfmaker.hosting")

KIND = "InferenceExperiment"
ACTIVE = frozenset({"Creating", "Created", "Updating", "Starting", "Running", "Stopping"})
DEFAULT_DURATION = 7 * 86400  # no Schedule: start now, end after 7 days (AWS)
MAX_DURATION = 30 * 86400
POLL = 1.0  # seconds between looks at the endpoint while it deploys
CHECK = 10.0  # a Running experiment's fallback look (sampling, the endpoint, the end time)
WAKE_CAP = 60.0  # waits for a schedule are split so a changed Schedule is seen soon


# -- checks ----------------------------------------------------------------------------------------------------


def _schedule(given: dict | None, current: float, started: float | None = None) -> dict:
    """The Schedule with its defaults filled in, or a ValidationException."""
    given = given or {}
    start = given.get("StartTime")
    if started is not None:  # a running experiment's start is history
        start = started
    elif start is None or start < current:
        start = current
    end = given.get("EndTime")
    if end is None:
        end = start + DEFAULT_DURATION
    if end <= start:
        raise validation("The Schedule's EndTime must be after its StartTime.")
    if end <= current:
        raise validation("The Schedule's EndTime must be in the future.")
    if end - start > MAX_DURATION:
        raise validation("The duration of an inference experiment (EndTime - StartTime) cannot exceed 30 days.")
    return {"StartTime": round(start, 3), "EndTime": round(end, 3)}


def _shadow_config(data: dict) -> tuple[str, str, int]:
    """(production variant, shadow variant, sampling percentage) of a ShadowModeConfig."""
    mode = data["ShadowModeConfig"]
    [shadow] = mode["ShadowModelVariants"]
    return mode["SourceModelVariantName"], shadow["ShadowModelVariantName"], shadow["SamplingPercentage"]


def _model_variants(data: dict) -> dict[str, dict]:
    return {v["VariantName"]: v for v in data["ModelVariants"]}


def _config_variant(variant: dict, weight: float) -> dict:
    """A ModelVariantConfig as a ProductionVariant of an endpoint configuration."""
    infra = variant["InfrastructureConfig"]["RealTimeInferenceConfig"]
    return {
        "VariantName": variant["VariantName"],
        "ModelName": variant["ModelName"],
        "InstanceType": infra["InstanceType"],
        "InitialInstanceCount": infra["InstanceCount"],
        "InitialVariantWeight": weight,
    }


def _capture(data: dict) -> dict | None:
    """DataStorageConfig as the endpoint's DataCaptureConfig: every request and answer of both variants."""
    storage = data.get("DataStorageConfig")
    if not storage:
        return None
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": storage["Destination"],
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    if storage.get("KmsKey"):
        capture["KmsKeyId"] = storage["KmsKey"]
    if storage.get("ContentType"):
        capture["CaptureContentTypeHeader"] = storage["ContentType"]
    return capture


def _experiment_config(data: dict, name: str) -> dict:
    """The CreateEndpointConfig request the experiment deploys: production plus the shadow at its share."""
    source, shadow, percentage = _shadow_config(data)
    variants = _model_variants(data)
    params = {
        "EndpointConfigName": name,
        "ProductionVariants": [_config_variant(variants[source], 1.0)],
        # deployments.shadow_fraction: a shadow's share is its weight over production's (here 1.0)
        "ShadowProductionVariants": [_config_variant(variants[shadow], percentage / 100.0)],
    }
    capture = _capture(data)
    if capture:
        params["DataCaptureConfig"] = capture
    if data.get("KmsKey"):
        params["KmsKeyId"] = data["KmsKey"]
    return params


def _active_on_endpoint(ctx: Context, endpoint: str, other_than: str | None = None) -> str | None:
    """The name of another experiment not yet finished on this endpoint, if there is one."""
    R = schema.resources
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(R.c.name, R.c.arn).where(
                R.c.kind == KIND,
                R.c.account_id == ctx.account_id,
                R.c.region == ctx.region,
                R.c.parent == endpoint,
                R.c.status.in_(sorted(ACTIVE)),
            )
        ).all()
    return next((row.name for row in rows if row.arn != other_than), None)


def _check(ctx: Context, data: dict, arn: str | None = None) -> None:
    """Everything CreateInferenceExperiment (and an Update before the start) must refuse."""
    endpoint = ENDPOINT.load(ctx, data["EndpointName"])
    if endpoint.status != "InService":
        raise validation(
            f"Endpoint {endpoint.name} is {endpoint.status}; an inference experiment needs an InService endpoint."
        )
    live = endpoint.data["_live"]
    if any(v.get("serverless") for v in live["variants"] + live["shadows"]):
        raise validation(f"Endpoint {endpoint.name} has a serverless variant; shadow tests need instance variants.")
    production = [v["name"] for v in live["variants"]]
    source, shadow, _ = _shadow_config(data)
    if source not in production:
        raise validation(
            f"SourceModelVariantName {source} is not a production variant of endpoint {endpoint.name} "
            f"(its production variants: {', '.join(production)})."
        )
    if shadow == source or shadow in production:
        raise validation(
            f"ShadowModelVariantName {shadow} names a production variant of endpoint {endpoint.name}; "
            "the shadow variant needs a name of its own."
        )
    names = [v["VariantName"] for v in data["ModelVariants"]]
    if len(set(names)) != len(names):
        raise validation(f"ModelVariants names a variant more than once: {', '.join(names)}.")
    unknown = [n for n in names if n not in (source, shadow)]
    if unknown:
        raise validation(
            f"ModelVariants {', '.join(unknown)} is neither the SourceModelVariantName ({source}) "
            f"nor a ShadowModelVariantName ({shadow})."
        )
    missing = [n for n in (source, shadow) if n not in names]
    if missing:
        raise validation(f"ModelVariants needs a configuration for variant(s) {', '.join(missing)}.")
    for variant in data["ModelVariants"]:
        if variant["InfrastructureConfig"]["RealTimeInferenceConfig"]["InstanceCount"] < 1:
            raise validation(f"The InstanceCount of variant {variant['VariantName']} must be at least 1.")
        model = MODEL.load(ctx, variant["ModelName"]).data
        try:
            container_of(model)
        except ModelDataError as err:
            raise validation(f"SelfMaker does not support {err} yet.") from None
    storage = data.get("DataStorageConfig")
    if storage:
        check_s3_uri(ctx.backends, ctx.account_id, storage["Destination"], "DataStorageConfig.Destination")
    # What the endpoint will be asked to serve must be a configuration it can serve.
    endpoint_configs.check(ctx, _experiment_config(data, "check"))
    other = _active_on_endpoint(ctx, endpoint.name, other_than=arn)
    if other:
        raise in_use(f"Endpoint {endpoint.name} already has the inference experiment {other}; stop it first.")


# -- the kind ----------------------------------------------------------------------------------------------------


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    _check(ctx, data)
    data["Schedule"] = _schedule(params.get("Schedule"), data["CreationTime"])
    data["EndpointName"] = ENDPOINT.load(ctx, data["EndpointName"]).name
    data["Status"] = "Creating"


# While Running only these may change (AWS: description, sampling percentage and end date).
_RUNNING_EDITS = ("Description", "ShadowModeConfig", "Schedule")


def _on_update(ctx: Context, params: dict, record: Record) -> None:
    data, status = record.data, record.status
    if status not in ("Created", "Running"):
        raise conflict(
            f"The inference experiment {record.name} is {status}; only a Created or Running experiment can be updated."
        )
    changes = {k: v for k, v in params.items() if k != "Name"}
    if status == "Running":
        refused = sorted(set(changes) - set(_RUNNING_EDITS))
        if refused:
            raise validation(
                f"{', '.join(refused)} cannot change while the inference experiment is Running; only "
                "Description, the shadow variant's SamplingPercentage and Schedule.EndTime can."
            )
        if "ShadowModeConfig" in changes:
            old, new = _shadow_config(data), _shadow_config(changes)
            if old[:2] != new[:2]:
                raise validation(
                    "While the inference experiment is Running, ShadowModeConfig may change only the "
                    "shadow variant's SamplingPercentage, not which variants take part."
                )
        schedule = changes.get("Schedule")
        if schedule is not None:
            started = data["Schedule"]["StartTime"]
            if schedule.get("StartTime") not in (None, started):
                raise validation("The Schedule's StartTime cannot change once the inference experiment has started.")
            changes["Schedule"] = _schedule({"EndTime": schedule.get("EndTime")}, now(), started=started)
        data.update(changes)
    else:
        merged = {**data, **changes}
        _check(ctx, merged, arn=record.arn)
        if "Schedule" in changes:
            merged["Schedule"] = _schedule(changes["Schedule"], now())
        data.update(merged)
    data.update(Status="Updating", _resume=status)


def _on_delete(ctx: Context, record: Record, conn) -> None:
    if record.status not in ("Created", "Completed", "Cancelled"):
        raise conflict(
            f"The inference experiment {record.name} is {record.status}; stop it before deleting it "
            "(only Created, Completed or Cancelled experiments can be deleted)."
        )


def _variant_statuses(data: dict) -> dict[str, str]:
    if "_variant_status" in data:
        return data["_variant_status"]
    status = data["Status"]
    if status in ("Running", "Updating") and data.get("_resume", "Running") == "Running":
        state = "InService"
    elif status == "Stopping":
        state = "Updating"
    else:
        state = "Creating"
    return {v["VariantName"]: state for v in data["ModelVariants"]}


def present(ctx: Context, record: Record) -> dict:
    data = record.data
    out = {
        k: data[k]
        for k in (
            "Name",
            "Type",
            "Schedule",
            "Status",
            "StatusReason",
            "Description",
            "CreationTime",
            "CompletionTime",
            "LastModifiedTime",
            "RoleArn",
            "DataStorageConfig",
            "ShadowModeConfig",
            "KmsKey",
        )
        if k in data
    }
    out["Arn"] = data["InferenceExperimentArn"]
    metadata = {"EndpointName": data["EndpointName"]}
    endpoint = ctx.backends.resources.get(record.account_id, record.region, "Endpoint", name=data["EndpointName"])
    if endpoint is not None:
        metadata.update(
            {
                "EndpointConfigName": endpoint.data["EndpointConfigName"],
                "EndpointStatus": endpoint.status,
                **({"FailureReason": endpoint.data["FailureReason"]} if endpoint.data.get("FailureReason") else {}),
            }
        )
    out["EndpointMetadata"] = metadata
    statuses = _variant_statuses(data)
    out["ModelVariants"] = [{**v, "Status": statuses[v["VariantName"]]} for v in data["ModelVariants"]]
    return out


def _summary(record: Record) -> dict:
    keys = (
        "Name",
        "Type",
        "Schedule",
        "Status",
        "StatusReason",
        "Description",
        "CreationTime",
        "CompletionTime",
        "LastModifiedTime",
        "RoleArn",
    )
    return {k: record.data[k] for k in keys if k in record.data}


def _kick(ctx: Context, arn: str) -> None:
    kick(ctx.backends, arn)


INFERENCE_EXPERIMENT = Kind(
    KIND,
    "inference-experiment",
    name_member="Name",
    arn_member="InferenceExperimentArn",
    status_member="Status",
    parent_member="EndpointName",
    not_found="Inference experiment {name} does not exist.",
    not_found_code="ResourceNotFound",
    exists="An inference experiment named {name} already exists.",
    exists_code="ResourceInUse",
    on_create=_on_create,
    on_update=_on_update,
    on_delete=_on_delete,
    present=present,
    summarize=_summary,
    # Type has one value (ShadowMode), which every experiment has: the filter selects them all.
    extra_filters=lambda ctx, params: [],
    after_create=_kick,
    after_update=_kick,
).register()


# -- StartInferenceExperiment, StopInferenceExperiment ------------------------------------------------------------


@operation("sagemaker", "StartInferenceExperiment")
def start_inference_experiment(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = INFERENCE_EXPERIMENT.load(ctx, params["Name"], conn=conn, lock=True)
        if record.status != "Created":
            raise conflict(
                f"The inference experiment {record.name} is {record.status}; only a Created experiment can be started."
            )
        moment = now()
        record.data["Schedule"]["StartTime"] = min(record.data["Schedule"]["StartTime"], moment)
        record.data.update(Status="Starting", LastModifiedTime=moment)
        record.status = "Starting"
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return {"InferenceExperimentArn": record.arn}


def _stop_plan(data: dict, params: dict) -> dict:
    """What StopInferenceExperiment asks of the endpoint: promote, restore (revert) or retain."""
    source, shadow, _ = _shadow_config(data)
    actions = params["ModelVariantActions"]
    unknown = sorted(set(actions) - {source, shadow})
    if unknown:
        raise validation(
            f"ModelVariantActions names {', '.join(unknown)}, which is not a variant of the inference "
            f"experiment ({source}, {shadow})."
        )
    if actions.get(source) == "Promote":
        raise validation(f"{source} is the production variant: only a shadow variant can be promoted.")
    shadow_action = actions.get(shadow, "Remove")
    if actions.get(source) == "Remove" and shadow_action != "Promote":
        raise validation(
            f"ModelVariantActions removes the production variant {source} without promoting the shadow "
            f"variant {shadow}: the endpoint would have no production variant."
        )
    desired = params.get("DesiredModelVariants") or []
    for variant in desired:
        if shadow_action != "Promote" or variant["VariantName"] != shadow:
            raise validation(
                f"DesiredModelVariants names {variant['VariantName']}; it may only configure a shadow "
                "variant that ModelVariantActions promotes."
            )
        if variant["ModelName"] != _model_variants(data)[shadow]["ModelName"]:
            raise validation(
                f"DesiredModelVariants gives variant {shadow} the model {variant['ModelName']}; "
                f"the promoted variant serves the model it was tested with, "
                f"{_model_variants(data)[shadow]['ModelName']}."
            )
        if variant["InfrastructureConfig"]["RealTimeInferenceConfig"]["InstanceCount"] < 1:
            raise validation(f"The InstanceCount of variant {shadow} must be at least 1.")
    action = {"Promote": "promote", "Remove": "restore", "Retain": "retain"}[shadow_action]
    plan: dict = {"action": action, "issued": False}
    if desired:
        plan["infrastructure"] = desired[0]["InfrastructureConfig"]
    return plan


@operation("sagemaker", "StopInferenceExperiment")
def stop_inference_experiment(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = INFERENCE_EXPERIMENT.load(ctx, params["Name"], conn=conn, lock=True)
        if record.status != "Running":
            raise conflict(
                f"The inference experiment {record.name} is {record.status}; only a Running experiment can be stopped."
            )
        plan = _stop_plan(record.data, params)
        plan["state"] = params.get("DesiredState") or "Completed"
        moment = now()
        record.data.update(Status="Stopping", LastModifiedTime=moment, _stop=plan)
        if params.get("Reason"):
            record.data["StatusReason"] = params["Reason"]
        record.status = "Stopping"
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return {"InferenceExperimentArn": record.arn}


# -- the controller ------------------------------------------------------------------------------------------------


def _config_name(record: Record, purpose: str) -> str:
    """A stable EndpointConfig name for this experiment's ``purpose`` (the same after a restart)."""
    digest = hashlib.sha256(f"{record.arn}/{record.created_at}/{purpose}".encode()).hexdigest()[:8]
    return f"{record.name[: 63 - len(purpose) - 10]}-{purpose}-{digest}"


class Step:
    """One reconcile step of one inference experiment."""

    def __init__(self, backends: Backends, record: Record):
        self.backends, self.record = backends, record
        self.ctx = Context(backends=backends, account_id=record.account_id, region=record.region, service="sagemaker")

    @property
    def data(self) -> dict:
        return self.record.data

    def commit(self, mutate) -> None:
        """Apply ``mutate(data)`` unless the experiment's status changed meanwhile (a Stop, an Update)."""
        expected = self.record.status

        def change(fresh: Record, _conn):
            if fresh.status != expected:
                return False
            mutate(fresh.data)
            fresh.status = fresh.data["Status"]
            return None

        fresh = self.backends.resources.mutate(change, arn=self.record.arn)
        if fresh is not None:
            self.record = fresh

    def endpoint(self) -> Record | None:
        return self.backends.resources.get(
            self.record.account_id, self.record.region, "Endpoint", name=self.data["EndpointName"]
        )

    def run(self) -> float | None:
        status = self.record.status
        if status == "Creating":
            self.commit(lambda d: d.update(Status="Created"))
            return 0.0
        if status == "Updating":
            resume = self.data.get("_resume", "Created")
            self.commit(lambda d: (d.update(Status=resume), d.pop("_resume", None)))
            return 0.0
        if status == "Created":
            return self.wait_for_start()
        if status == "Starting":
            return self.start()
        if status == "Running":
            return self.watch()
        return self.stop()

    def finish(self, status: str, reason: str | None = None, variants: dict[str, str] | None = None) -> None:
        moment = now()

        def done(d):
            d.update(Status=status, CompletionTime=moment)
            if reason:
                d["StatusReason"] = reason[:1024]
            d["_variant_status"] = variants or {v["VariantName"]: "Deleted" for v in d["ModelVariants"]}
            d.pop("_stop", None)

        self.commit(done)

    # -- Created: wait for the schedule -------------------------------------------------------------------------

    def wait_for_start(self) -> float | None:
        schedule, moment = self.data["Schedule"], now()
        if moment >= schedule["EndTime"]:
            self.finish(
                "Cancelled", "The schedule ended before the inference experiment started.", self.before_statuses()
            )
            return None
        if moment < schedule["StartTime"]:
            return min(WAKE_CAP, schedule["StartTime"] - moment)
        self.commit(lambda d: d.update(Status="Starting"))
        return 0.0

    # -- Starting: the experiment's configuration deployed through UpdateEndpoint ----------------------------------

    def start(self) -> float | None:
        endpoint = self.endpoint()
        if endpoint is None or endpoint.status in ("Failed", "Deleting"):
            self.finish("Cancelled", f"The endpoint {self.data['EndpointName']} is gone or failed.")
            return None
        config = _config_name(self.record, "shadow")
        if "_before" not in self.data:
            if endpoint.status != "InService":
                return POLL
            before = {"config": endpoint.data["EndpointConfigName"], "release": copy.deepcopy(endpoint.data["_live"])}
            self.commit(lambda d: d.update(_before=before, _config=config))
            return 0.0
        if not self.data.get("_issued"):
            deploying = (endpoint.data.get("_next") or {}).get("config")
            if config not in (deploying, endpoint.data["EndpointConfigName"]):
                if endpoint.status != "InService":
                    return POLL  # another update is under way: ours follows it
                try:
                    self.ensure_config(_experiment_config(self.data, config))
                    ENDPOINT.update(self.ctx, {"EndpointName": endpoint.name, "EndpointConfigName": config})
                except AWSError as err:
                    self.finish("Cancelled", f"The endpoint could not be updated: {err.message}")
                    return None
            self.commit(lambda d: d.update(_issued=True))
            return POLL
        if endpoint.status != "InService" or endpoint.data.get("_next"):
            return POLL
        if endpoint.data["EndpointConfigName"] != config:  # the deployment was rolled back
            reason = endpoint.data.get("FailureReason") or "the endpoint's update did not complete"
            self.finish("Cancelled", f"The shadow variant could not be deployed: {reason}", self.before_statuses())
            return None
        self.commit(lambda d: d.update(Status="Running"))
        return 0.0

    def ensure_config(self, params: dict) -> None:
        try:
            ENDPOINT_CONFIG.create(self.ctx, params)
        except AWSError as err:
            if not err.exists:  # made by this step before a restart: the same name holds the same content
                raise

    def before_statuses(self) -> dict[str, str]:
        source, shadow, _ = _shadow_config(self.data)
        return {source: "InService", shadow: "Deleted"}

    # -- Running: keep the sampling share, stop at the end time ---------------------------------------------------

    def watch(self) -> float | None:
        endpoint = self.endpoint()
        _, shadow, percentage = _shadow_config(self.data)
        if endpoint is None or endpoint.status in ("Failed", "Deleting"):
            self.finish("Cancelled", f"The endpoint {self.data['EndpointName']} was deleted during the experiment.")
            return None
        if endpoint.data["EndpointConfigName"] != self.data["_config"] or endpoint.data.get("_next"):
            # Someone else's UpdateEndpoint: the experiment's variants no longer serve as it set them up.
            self.finish(
                "Cancelled",
                f"The endpoint {endpoint.name} was updated outside the inference experiment.",
                self.before_statuses(),
            )
            return None
        if self.data["Schedule"]["EndTime"] <= now():
            plan = {"action": "restore", "issued": False, "state": "Completed"}
            self.commit(lambda d: d.update(Status="Stopping", _stop=plan))
            return 0.0
        served = {v["name"]: v["weight"] for v in endpoint.data["_live"]["shadows"]}
        wanted = percentage / 100.0
        if served.get(shadow) != wanted and not set_shadow_weight(self.ctx, endpoint.name, shadow, wanted):
            return POLL  # the endpoint is busy (a resize): try again shortly
        return min(CHECK, max(0.0, self.data["Schedule"]["EndTime"] - now()))

    # -- Stopping: promote, restore or retain ------------------------------------------------------------------------

    def stop(self) -> float | None:
        plan = self.data["_stop"]
        source, shadow, _ = _shadow_config(self.data)
        if plan["action"] == "retain":
            self.finish(plan["state"], variants={source: "InService", shadow: "InService"})
            return None
        endpoint = self.endpoint()
        if endpoint is None or endpoint.status in ("Failed", "Deleting"):
            self.finish(plan["state"], f"The endpoint {self.data['EndpointName']} is gone or failed.")
            return None
        if plan["action"] == "promote":
            target, outcome = _config_name(self.record, "promoted"), {source: "Deleted", shadow: "InService"}
        else:
            target, outcome = self.data["_before"]["config"], self.before_statuses()
        if not plan["issued"]:
            deploying = (endpoint.data.get("_next") or {}).get("config")
            if target not in (deploying, endpoint.data["EndpointConfigName"]):
                if endpoint.status != "InService":
                    return POLL
                try:
                    if plan["action"] == "promote":
                        self.ensure_config(self.promoted_config(target))
                        ENDPOINT.update(self.ctx, {"EndpointName": endpoint.name, "EndpointConfigName": target})
                    else:
                        restore(self.ctx, endpoint.name, self.data["_before"]["release"])
                except AWSError as err:
                    self.finish("Cancelled", f"The endpoint could not be updated: {err.message}")
                    return None
            self.commit(lambda d: d["_stop"].update(issued=True))
            return POLL
        if endpoint.status != "InService" or endpoint.data.get("_next"):
            return POLL
        if endpoint.data["EndpointConfigName"] != target:  # rolled back: the experiment's setup still serves
            reason = endpoint.data.get("FailureReason") or "the endpoint's update did not complete"
            self.finish(
                "Cancelled", f"The endpoint could not be updated: {reason}", {source: "InService", shadow: "InService"}
            )
            return None
        self.finish(plan["state"], variants=outcome)
        return None

    def promoted_config(self, name: str) -> dict:
        """The endpoint as before the experiment, with the shadow's model in place of the production variant.

        Its instances: DesiredModelVariants' if given, else the production variant's during the experiment
        (AWS's recommended choice: "retain the instance count and type from the production variant").
        """
        source, shadow, _ = _shadow_config(self.data)
        variants = _model_variants(self.data)
        infrastructure = self.data["_stop"].get("infrastructure") or variants[source]["InfrastructureConfig"]
        before = self.data["_before"]["release"]

        def as_config(v: dict) -> dict:
            return {
                "VariantName": v["name"],
                "ModelName": v["model"]["ModelName"],
                "InstanceType": v["instance_type"],
                "InitialInstanceCount": v["count"],
                "InitialVariantWeight": float(v["weight"]),
            }

        production = []
        for v in before["variants"]:
            if v["name"] == source:
                promoted = {**variants[shadow], "InfrastructureConfig": infrastructure}
                production.append(_config_variant(promoted, float(v["weight"])))
            else:
                production.append(as_config(v))
        params = {"EndpointConfigName": name, "ProductionVariants": production}
        shadows = [as_config(v) for v in before["shadows"] if v["name"] != shadow]
        if shadows:
            params["ShadowProductionVariants"] = shadows
        if before.get("capture"):
            params["DataCaptureConfig"] = before["capture"]
        return params


def reconcile(backends: Backends, record: Record) -> float | None:
    return Step(backends, record).run()


register(Controller(KIND, ACTIVE, reconcile))
