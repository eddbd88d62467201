"""The Endpoint kind: CreateEndpoint, DescribeEndpoint, ListEndpoints, UpdateEndpoint,
UpdateEndpointWeightsAndCapacities and DeleteEndpoint.

The handlers check the request, write what the endpoint should become into its
record (a *release*: the configuration snapshotted with its models, see
deployments.py) and kick the controller, which does the work. DescribeEndpoint
only reads the record, so it shows what the controller last recorded.
"""

from __future__ import annotations

from ...aws.cloudwatch.alarms import alarm_state
from ...engines.model_server import container_of
from ...engines.reconciler import kick
from ...server.errors import validation
from ...server.operations import Context, operation
from ...store.resources import Record, now
from ..catalog import MODEL
from ..jobs import credentials
from ..kinds import Kind
from . import deployments, routes
from .endpoint_configs import ENDPOINT_CONFIG, SERVERLESS_INSTANCE_TYPE

IN_PROGRESS = ("Creating", "Updating", "RollingBack", "SystemUpdating", "Deleting")


# -- releases: a configuration as the controller deploys it -------------------------------------------------------


def variant_key(account_id: str, region: str, endpoint: str, created: float, generation: int, variant: str) -> str:
    """The fleet Group key of a variant in an endpoint's ``generation``-th release: new for every release."""
    return f"{account_id}-{region}-{endpoint}-{int(created * 1000)}-{generation}-{variant}".lower()


def release(
    ctx: Context,
    record_name: str,
    created: float,
    config: dict,
    generation: int,
    previous: dict | None = None,
    excluded: frozenset[str] | None = None,
) -> dict:
    """The fleet an endpoint configuration calls for, with its models snapshotted.

    ``previous`` with ``excluded``: RetainAllVariantProperties, i.e. keep the current
    DesiredWeight, DesiredInstanceCount and DataCaptureConfig except the excluded ones.
    """
    kept = {v["name"]: v for v in previous["variants"]} if previous is not None else {}
    excluded = excluded or frozenset()

    def variant(spec: dict) -> dict:
        name, serverless = spec["VariantName"], spec.get("ServerlessConfig")
        model = MODEL.load(ctx, spec["ModelName"]).data
        entry = {
            "name": name,
            "key": variant_key(ctx.account_id, ctx.region, record_name, created, generation, name),
            "model": model,
            "image": container_of(model).get("Image"),
            "instance_type": SERVERLESS_INSTANCE_TYPE if serverless else spec["InstanceType"],
            "count": 1 if serverless else spec["InitialInstanceCount"],
            "weight": spec.get("InitialVariantWeight", 1.0),
            "serverless": serverless,
            "download_timeout": spec.get("ModelDataDownloadTimeoutInSeconds"),
            "startup_timeout": spec.get("ContainerStartupHealthCheckTimeoutInSeconds"),
            "ready": 0,
        }
        old = kept.get(name)
        if old is not None:
            if "DesiredWeight" not in excluded:
                entry["weight"] = old["weight"]
            if "DesiredInstanceCount" not in excluded and not serverless and not old.get("serverless"):
                entry["count"] = old["count"]
        return entry

    capture = config.get("DataCaptureConfig")
    if previous is not None and "DataCaptureConfig" not in excluded:
        capture = previous.get("capture")
    return {
        "config": config["EndpointConfigName"],
        "started": now(),
        "capture": capture,
        "variants": [variant(v) for v in config["ProductionVariants"]],
        "shadows": [variant(v) for v in config.get("ShadowProductionVariants") or []],
    }


def check_deployment(config: dict | None, nxt: dict) -> None:
    """What botocore's model cannot say about a DeploymentConfig (ValidationException)."""
    if not config:
        return
    blue_green, rolling = config.get("BlueGreenUpdatePolicy"), config.get("RollingUpdatePolicy")
    if blue_green and rolling:
        raise validation("DeploymentConfig takes either a BlueGreenUpdatePolicy or a RollingUpdatePolicy, not both.")
    total = sum(v["count"] for v in nxt["variants"])

    def fraction(size: dict, member: str, low: float, high: float) -> None:
        share = deployments.capacity_fraction(size, total)
        if not low <= share <= high:
            raise validation(
                f"{member} must be between {low:.0%} and {high:.0%} of the new fleet's {total} "
                f"instance(s); {size['Value']} {size['Type']} is {share:.0%}."
            )

    if blue_green:
        routing = blue_green["TrafficRoutingConfiguration"]
        if routing["Type"] == "CANARY":
            if not routing.get("CanarySize"):
                raise validation("TrafficRoutingConfiguration of Type CANARY needs a CanarySize.")
            fraction(routing["CanarySize"], "CanarySize", 0.0, 0.5)
        elif routing["Type"] == "LINEAR":
            if not routing.get("LinearStepSize"):
                raise validation("TrafficRoutingConfiguration of Type LINEAR needs a LinearStepSize.")
            fraction(routing["LinearStepSize"], "LinearStepSize", 0.1, 0.5)
    if rolling:
        fraction(rolling["MaximumBatchSize"], "MaximumBatchSize", 0.05, 0.5)
        if rolling.get("RollbackMaximumBatchSize"):
            raise validation(
                "SelfMaker does not support RollbackMaximumBatchSize yet: a rollback restores "
                "the whole old fleet at once."
            )


def check_alarms(ctx: Context, config: dict | None) -> None:
    names = [a["AlarmName"] for a in ((config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
    if not names:
        return
    missing = [n for n in names if alarm_state(ctx.backends, ctx.account_id, ctx.region, n) is None]
    if missing:
        raise validation(f"The CloudWatch alarm(s) {', '.join(missing)} of AutoRollbackConfiguration do not exist.")


# -- the kind ----------------------------------------------------------------------------------------------------


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    config = ENDPOINT_CONFIG.load(ctx, params["EndpointConfigName"]).data
    data["EndpointConfigName"] = config["EndpointConfigName"]
    data["_live"] = release(ctx, params["EndpointName"], data["CreationTime"], config, generation=1)
    deployment = data.pop("DeploymentConfig", None)
    if deployment:
        check_deployment(deployment, data["_live"])
        check_alarms(ctx, deployment)
        data["LastDeploymentConfig"] = deployment
    data.update(EndpointStatus="Creating", _rev=0, _generation=1)
    # The instances' own key, as a job's (jobs/credentials.py): valid from creation until the endpoint is gone.
    data["_credentials"] = credentials.mint()


def _cannot_update(record: Record) -> Exception:
    if record.status in IN_PROGRESS:
        return validation(f'Cannot update in-progress endpoint "{record.arn}".')
    return validation(
        f'Cannot update endpoint "{record.arn}" in status {record.status}; delete it and create it again.'
    )


def _on_update(ctx: Context, params: dict, record: Record) -> None:
    data = record.data
    if record.status != "InService":
        raise _cannot_update(record)
    config = ENDPOINT_CONFIG.load(ctx, params["EndpointConfigName"]).data
    excluded = params.get("ExcludeRetainedVariantProperties")
    if excluded and not params.get("RetainAllVariantProperties"):
        raise validation("ExcludeRetainedVariantProperties requires RetainAllVariantProperties to be true.")
    deployment = params.get("DeploymentConfig")
    if params.get("RetainDeploymentConfig"):
        if deployment:
            raise validation("Specify either DeploymentConfig or RetainDeploymentConfig, not both.")
        deployment = data.get("LastDeploymentConfig")
    generation = data["_generation"] + 1
    retained = params.get("RetainAllVariantProperties")
    nxt = release(
        ctx,
        record.name,
        data["CreationTime"],
        config,
        generation,
        previous=data["_live"] if retained else None,
        excluded=frozenset(p["VariantPropertyType"] for p in excluded or []),
    )
    check_deployment(deployment, nxt)
    check_alarms(ctx, deployment)
    _begin_deployment(data, nxt, deployment, generation)
    if params.get("DeploymentConfig"):
        data["LastDeploymentConfig"] = params["DeploymentConfig"]


def _begin_deployment(data: dict, nxt: dict, deployment: dict | None, generation: int) -> None:
    """Make ``nxt`` the release the controller deploys next (the endpoint becomes Updating)."""
    started = now()
    data["_deploy"] = {
        **deployments.plan(deployment, data["_live"], nxt),
        "step": 0,
        "phase": "provision",
        "share": 0.0,
        "started": started,
        "since": started,
    }
    data["_next"] = nxt
    data.pop("FailureReason", None)
    data.update(EndpointStatus="Updating", _generation=generation, _rev=data["_rev"] + 1)


def _kick(ctx: Context, arn: str) -> None:
    kick(ctx.backends, arn)


def _created(ctx: Context, arn: str) -> None:
    record = ctx.backends.resources.get_by_arn(arn)  # our own ARN, just made: not a caller's reference
    if record is not None:
        credentials.grant(ctx.backends, record)
    kick(ctx.backends, arn)


# -- for inference experiments (inference_experiments.py): an endpoint restored, a shadow's sampling changed --


def restore(ctx: Context, endpoint_name: str, snapshot: dict) -> None:
    """UpdateEndpoint back to a release the endpoint served before (a shadow test's "before" state).

    The snapshot's models and configuration name are used as they were, so it works even if the Model or
    the EndpointConfig was deleted since (as a running endpoint keeps its snapshot too). The release gets
    fresh fleet keys: it is deployed blue/green all at once, like any UpdateEndpoint without a
    DeploymentConfig, so production never fails a request meanwhile.
    """
    with ctx.store.write() as conn:
        record = ENDPOINT.load(ctx, endpoint_name, conn=conn, lock=True)
        if record.status != "InService":
            raise _cannot_update(record)
        data = record.data
        generation = data["_generation"] + 1

        def fresh(variant: dict) -> dict:
            kept = {k: v for k, v in variant.items() if k not in ("deployed_at", "drain")}
            key = variant_key(ctx.account_id, ctx.region, record.name, data["CreationTime"], generation, kept["name"])
            return {**kept, "key": key, "ready": 0}

        nxt = {
            **snapshot,
            "started": now(),
            "variants": [fresh(v) for v in snapshot["variants"]],
            "shadows": [fresh(v) for v in snapshot["shadows"]],
        }
        _begin_deployment(data, nxt, None, generation)
        data["LastModifiedTime"] = now()
        record.status = "Updating"
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)


def set_shadow_weight(ctx: Context, endpoint_name: str, variant_name: str, weight: float) -> bool:
    """Change a serving shadow variant's weight (its sampling share, deployments.shadow_fraction) in place.

    No redeploy: the controller publishes a Route with the new share on its next step. False when the
    endpoint is not InService (a deployment or resize is under way): the caller tries again later.
    """
    with ctx.store.write() as conn:
        record = ENDPOINT.load(ctx, endpoint_name, conn=conn, lock=True)
        shadows = {v["name"]: v for v in record.data["_live"]["shadows"]}
        if record.status != "InService" or variant_name not in shadows:
            return False
        shadows[variant_name]["weight"] = weight
        record.data["_rev"] += 1  # a controller step computed on the old weight must not overwrite it
        ctx.backends.resources.save(record, conn=conn, touch=False)
    kick(ctx.backends, record.arn)
    return True


# -- DescribeEndpoint ------------------------------------------------------------------------------------------------


def _images(variant: dict) -> list[dict]:
    image = {"SpecifiedImage": variant["image"]} if variant.get("image") else {}
    if image and variant.get("deployed_at"):
        image["ResolutionTime"] = variant["deployed_at"]
    return [image] if image else []


def _summary(variant: dict, statuses: list[dict], desired: dict | None = None) -> dict:
    desired = desired or {}
    out = {
        "VariantName": variant["name"],
        "DeployedImages": _images(variant),
        "CurrentWeight": float(variant["weight"]),
        "DesiredWeight": float(desired.get("weight", variant["weight"])),
        "VariantStatus": statuses,
    }
    if variant.get("serverless"):
        out["CurrentServerlessConfig"] = out["DesiredServerlessConfig"] = variant["serverless"]
    else:
        out["CurrentInstanceCount"] = variant.get("ready", 0)
        out["DesiredInstanceCount"] = desired.get("count", variant["count"])
    return out


def _pending(variant: dict, statuses: list[dict], count: int | None = None) -> dict:
    out = _summary(variant, statuses)
    if not variant.get("serverless"):
        out["InstanceType"] = variant["instance_type"]
        if count is not None:
            out["DesiredInstanceCount"] = count
    return out


def _status(status: str, since: float, message: str | None = None) -> list[dict]:
    entry = {"Status": status, "StartTime": since}
    if message:
        entry["StatusMessage"] = message
    return [entry]


def _phase_statuses(deploy: dict) -> tuple[list[dict], list[dict]]:
    """(old fleet's, new fleet's) VariantStatus for a deployment's phase."""
    since, steps = deploy["since"], len(deploy["steps"])
    phase = deploy["phase"]
    if phase == "provision":
        return [], _status("Creating", since, f"Starting the instances of step {deploy['step'] + 1} of {steps}.")
    if phase == "bake":
        message = (
            f"Baking for {deploy['wait']} seconds with {deploy['share']:.0%} of the traffic "
            f"(step {deploy['step'] + 1} of {steps})."
        )
        return [], _status("Baking", since, message)
    if phase == "terminate":
        return _status(
            "Deleting",
            since,
            "All traffic is on the new fleet; the old fleet stops after "
            f"TerminationWaitInSeconds ({deploy['termination_wait']} s).",
        ), []
    return (
        _status("ActivatingTraffic", since, "Rolling back: the old fleet takes all the traffic again."),
        _status("Deleting", since, deploy.get("failure")),
    )


def present(ctx: Context, record: Record) -> dict:
    data = record.data
    out = {
        k: data[k]
        for k in (
            "EndpointName",
            "EndpointArn",
            "EndpointConfigName",
            "EndpointStatus",
            "FailureReason",
            "CreationTime",
            "LastModifiedTime",
            "LastDeploymentConfig",
        )
        if k in data
    }
    live, nxt, deploy = data["_live"], data.get("_next"), data.get("_deploy")
    capture = live.get("capture")
    if capture:
        enabled = capture.get("EnableCapture", True)
        out["DataCaptureConfig"] = {
            "EnableCapture": enabled,
            "CaptureStatus": "Started" if enabled else "Stopped",
            "CurrentSamplingPercentage": capture["InitialSamplingPercentage"],
            "DestinationS3Uri": capture["DestinationS3Uri"],
            "KmsKeyId": capture.get("KmsKeyId", ""),
        }
    if record.status in ("Creating", "Failed"):  # nothing deployed (yet)
        if record.status == "Creating":
            creating = _status("Creating", live["started"])
            out["PendingDeploymentSummary"] = {
                "EndpointConfigName": live["config"],
                "StartTime": live["started"],
                "ProductionVariants": [_pending(v, creating) for v in live["variants"]],
                **(
                    {"ShadowProductionVariants": [_pending(v, creating) for v in live["shadows"]]}
                    if live["shadows"]
                    else {}
                ),
            }
        return out
    capacity = data.get("_capacity") or {}
    old_status, new_status = _phase_statuses(deploy) if deploy else ([], [])
    out["ProductionVariants"] = [
        _summary(
            v,
            _status("Updating", data["LastModifiedTime"]) if v["name"] in capacity else old_status,
            capacity.get(v["name"]),
        )
        for v in live["variants"]
    ]
    if live["shadows"]:
        out["ShadowProductionVariants"] = [_summary(v, old_status) for v in live["shadows"]]
    if nxt:
        counts = deployments.green_counts(nxt, deploy)
        out["PendingDeploymentSummary"] = {
            "EndpointConfigName": nxt["config"],
            "StartTime": deploy["started"],
            "ProductionVariants": [_pending(v, new_status, counts[v["key"]]) for v in nxt["variants"]],
            **(
                {"ShadowProductionVariants": [_pending(v, new_status) for v in nxt["shadows"]]}
                if nxt["shadows"]
                else {}
            ),
        }
    return out


ENDPOINT = Kind(
    "Endpoint",
    "endpoint",
    operations=("Create", "Describe", "List", "Update"),  # DeleteEndpoint is its own (below)
    status_member="EndpointStatus",
    search_type="Endpoint",
    on_create=_on_create,
    on_update=_on_update,
    after_create=_created,
    after_update=_kick,
    present=present,
    summarize=lambda r: {
        k: r.data[k] for k in ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
    },
).register()


@operation("sagemaker", "DeleteEndpoint")
def delete_endpoint(ctx: Context, params: dict) -> dict:
    """Deleting: the Route goes at once; the controller stops the instances, then forgets the endpoint."""
    with ctx.store.write() as conn:
        record = ENDPOINT.load(ctx, params["EndpointName"], conn=conn, lock=True)
        if record.status != "Deleting":
            record.data.update(EndpointStatus="Deleting", LastModifiedTime=now(), _rev=record.data["_rev"] + 1)
            record.status = "Deleting"
            ctx.backends.resources.save(record, conn=conn)
    routes.withdraw(ctx.backends, record.account_id, record.region, record.name)
    kick(ctx.backends, record.arn)
    return {}


# -- UpdateEndpointWeightsAndCapacities ----------------------------------------------------------------------------


@operation("sagemaker", "UpdateEndpointWeightsAndCapacities")
def update_weights_and_capacities(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = ENDPOINT.load(ctx, params["EndpointName"], conn=conn, lock=True)
        data = record.data
        if record.status != "InService":
            raise _cannot_update(record)
        variants = {v["name"]: v for v in data["_live"]["variants"]}
        wanted = params["DesiredWeightsAndCapacities"]
        unknown = [w["VariantName"] for w in wanted if w["VariantName"] not in variants]
        if unknown:
            raise validation(
                f"The variant name(s) {', '.join(unknown)} is/are not present in the endpoint {record.name}."
            )
        changes = {}
        for want in wanted:
            variant = variants[want["VariantName"]]
            if want.get("ServerlessUpdateConfig"):
                raise validation("SelfMaker does not support ServerlessUpdateConfig yet.")
            if "DesiredInstanceCount" in want and variant.get("serverless"):
                raise validation(f"Variant {variant['name']} is serverless: it has no DesiredInstanceCount.")
            if want.get("DesiredInstanceCount") == 0:
                raise validation("DesiredInstanceCount must be at least 1.")
            change = {}
            if "DesiredWeight" in want:
                change["weight"] = want["DesiredWeight"]
            if "DesiredInstanceCount" in want:
                change["count"] = want["DesiredInstanceCount"]
            changes[variant["name"]] = change
        weights = {n: changes.get(n, {}).get("weight", v["weight"]) for n, v in variants.items()}
        if sum(weights.values()) <= 0:
            raise validation("The sum of the variants' weights must be greater than 0.")
        data.pop("FailureReason", None)
        data.update(_capacity=changes, EndpointStatus="Updating", LastModifiedTime=now(), _rev=data["_rev"] + 1)
        record.status = "Updating"
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return {"EndpointArn": record.arn}
