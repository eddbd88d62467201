"""The sagemaker-edge data plane its agents speak: GetDeviceRegistration, SendHeartbeat, GetDeployments.

rest-json POSTs to /GetDeviceRegistration, /SendHeartbeat and /GetDeployments on the
server's one port, signed for "sagemaker" (the app routes them by path: server/wire.py).
A device's heartbeat is kept on its record (:mod:`.device_records`); its DeploymentResult
moves its deployment in the plan (:mod:`.plans`).
"""

from __future__ import annotations

from ...aws.cloudwatch import metric_store
from ...server.errors import AWSError
from ...server.operations import Context, operation
from ...store.resources import now
from . import device_records, plans

SERVICE = "sagemaker-edge"
MAX_METRICS = 200  # per heartbeat, agent and model metrics each: a heartbeat is a status, not a metrics stream
# AWS never documented where a heartbeat's metrics went; SelfMaker publishes them to CloudWatch beside the
# endpoints' instance metrics (/aws/sagemaker/Endpoints), at the second the heartbeat arrived (docs/edge.md).
NAMESPACE = "/aws/sagemaker/EdgeDevices"


@operation(SERVICE, "GetDeviceRegistration", store_read=True)
def get_device_registration(ctx: Context, params: dict) -> dict:
    record = device_records.get(ctx, params["DeviceFleetName"], params["DeviceName"])
    # AWS never published the values; these three are SelfMaker's (docs/edge.md).
    registration = record.status if record is not None else "NOT_FOUND"
    return {"DeviceRegistration": registration, "CacheTTL": str(ctx.backends.settings.edge_cache_ttl)}


def _registered(ctx: Context, params: dict) -> None:
    record = device_records.get(ctx, params["DeviceFleetName"], params["DeviceName"])
    if record is None or record.status != device_records.REGISTERED:
        raise AWSError(
            "AccessDeniedException",
            f"Device {params['DeviceName']} is not registered in device fleet {params['DeviceFleetName']}.",
            403,
        )


@operation(SERVICE, "SendHeartbeat")
def send_heartbeat(ctx: Context, params: dict) -> dict:
    _registered(ctx, params)
    at = now()
    models = params.get("Models") or []

    def change(record, conn):
        if record.status != device_records.REGISTERED:
            return False  # deregistered meanwhile
        data = record.data
        data["LatestHeartbeat"] = at
        data["AgentVersion"] = params["AgentVersion"]
        data["Models"] = [
            {
                k: m[k]
                for k in ("ModelName", "ModelVersion", "LatestSampleTime", "LatestInference")
                if m.get(k) is not None
            }
            for m in models
            if m.get("ModelName") and m.get("ModelVersion")
        ]
        data["_ModelNames"] = "|" + "".join(f"{m['ModelName']}|" for m in data["Models"])
        # Kept for the operator (the last values only): AWS's APIs show none of them.
        data["_AgentMetrics"] = (params.get("AgentMetrics") or [])[:MAX_METRICS]
        data["_ModelMetrics"] = {
            m["ModelName"]: (m.get("ModelMetrics") or [])[:MAX_METRICS] for m in models if m.get("ModelName")
        }
        return None

    ctx.backends.resources.mutate(
        change,
        account_id=ctx.account_id,
        region=ctx.region,
        kind=device_records.KIND,
        name=device_records.key(params["DeviceFleetName"], params["DeviceName"]),
        touch=False,
    )
    _publish_metrics(ctx, params, models)
    if params.get("DeploymentResult"):
        plans.record_result(ctx, params["DeviceFleetName"], params["DeviceName"], params["DeploymentResult"])
    return {}


def _publish_metrics(ctx: Context, params: dict, models: list[dict]) -> None:
    device = {"DeviceFleetName": params["DeviceFleetName"], "DeviceName": params["DeviceName"]}
    published = [(metric, device) for metric in (params.get("AgentMetrics") or [])[:MAX_METRICS]]
    for model in models:
        if model.get("ModelName"):
            published += [(m, {**device, "ModelName": model["ModelName"]}) for m in model.get("ModelMetrics") or []]
    for metric, dimensions in published[: 2 * MAX_METRICS]:
        if metric.get("MetricName") and metric.get("Value") is not None:
            if metric.get("Dimension"):
                dimensions = {**dimensions, "Dimension": metric["Dimension"]}
            metric_store.record(
                ctx.backends, ctx.account_id, ctx.region, NAMESPACE, metric["MetricName"], dimensions,
                metric["Value"], "None",
            )  # fmt: skip


@operation(SERVICE, "GetDeployments")
def get_deployments(ctx: Context, params: dict) -> dict:
    _registered(ctx, params)
    return {"Deployments": plans.deployments_for(ctx, params["DeviceFleetName"], params["DeviceName"])}
