"""EndpointConfig: what an endpoint serves, checked at creation so an endpoint never starts on a bad one.

A configuration is a record (nothing runs when it is created), but CreateEndpointConfig
refuses what SelfMaker cannot serve with a clear ValidationException instead of
accepting it and failing later: variants need a model that exists and has one
container, instances (or a serverless configuration, served by one instance), and
features SelfMaker does not implement (multi-model endpoints, inference components,
asynchronous inference, explainers, ...) are named in the refusal. A data capture
destination must be an S3 bucket of the configuration's own account.
"""

from __future__ import annotations

from ...engines.model_server import ModelDataError, container_of
from ...objects.access import check_s3_uri
from ...server.errors import validation
from ...server.operations import Context
from ..catalog import MODEL
from ..kinds import Kind

# The instance size a serverless variant is served by (one instance; docs/endpoints.md).
SERVERLESS_INSTANCE_TYPE = "ml.m5.large"

# ProductionVariantServerlessConfig.MemorySizeInMB: AWS allows whole gigabytes only (the model says 1024..6144).
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)


def check_serverless(config: dict, where: str) -> None:
    """Refuse a serverless configuration AWS refuses (the model's range lets sizes in between pass)."""
    memory = config.get("MemorySizeInMB")
    if memory not in SERVERLESS_MEMORY_SIZES:
        sizes = ", ".join(str(s) for s in SERVERLESS_MEMORY_SIZES)
        raise validation(f"{where}: MemorySizeInMB {memory} is not one of the allowed sizes ({sizes}).")
    provisioned = config.get("ProvisionedConcurrency")
    if provisioned is not None and provisioned > config.get("MaxConcurrency", 0):
        raise validation(f"{where}: ProvisionedConcurrency must not exceed MaxConcurrency.")


# Members SelfMaker does not serve yet: (where, member) -> what it is, for the refusal's message.
_UNSUPPORTED_CONFIG = {
    "AsyncInferenceConfig": "asynchronous inference",
    "ExplainerConfig": "SageMaker Clarify online explainability",
    "CrossRegionTrafficConfig": "cross-region traffic",
}
_UNSUPPORTED_VARIANT = {
    "InstancePools": "instance pools",
    "AcceleratorType": "Elastic Inference accelerators",
    "CoreDumpConfig": "core dump collection",
    "ManagedInstanceScaling": "managed instance scaling",
    "CapacityReservationConfig": "capacity reservations",
    "AcceleratorPartitionLayouts": "accelerator partitions",
}


def _unsupported(what: str) -> Exception:
    return validation(f"SelfMaker does not support {what} yet.")


def _check_variant(ctx: Context, variant: dict, shadow: bool) -> None:
    name = variant["VariantName"]
    for member, what in _UNSUPPORTED_VARIANT.items():
        if variant.get(member) and not (
            member == "ManagedInstanceScaling" and variant[member].get("Status") == "DISABLED"
        ):
            raise _unsupported(f"{what} ({member} of variant {name})")
    routing = (variant.get("RoutingConfig") or {}).get("RoutingStrategy")
    if routing not in (None, "RANDOM"):
        raise _unsupported(
            f"the {routing} routing strategy (variant {name}); instances of a variant take requests in turn"
        )
    if not variant.get("ModelName"):
        raise _unsupported(f"inference components: variant {name} needs a ModelName")
    serverless = variant.get("ServerlessConfig")
    if serverless:
        check_serverless(serverless, f"ServerlessConfig of variant {name}")
        if shadow:
            raise validation(f"Shadow variant {name} cannot use ServerlessConfig.")
        if variant.get("InstanceType") or variant.get("InitialInstanceCount"):
            raise validation(
                f"Variant {name} sets ServerlessConfig together with InstanceType or "
                "InitialInstanceCount; a variant is either serverless or instance-based."
            )
    elif not variant.get("InstanceType") or not variant.get("InitialInstanceCount"):
        raise validation(f"Variant {name} needs InstanceType and InitialInstanceCount (or a ServerlessConfig).")
    model = MODEL.load(ctx, variant["ModelName"]).data
    try:
        container = container_of(model)
    except ModelDataError as err:
        raise _unsupported(str(err)) from None
    if container.get("Mode") == "MultiModel":
        raise _unsupported(f"multi-model endpoints (model {variant['ModelName']} has Mode MultiModel)")


def check(ctx: Context, params: dict) -> None:
    """Refuse a configuration SelfMaker cannot serve (ValidationException), before anything is stored."""
    for member, what in _UNSUPPORTED_CONFIG.items():
        if params.get(member):
            raise _unsupported(f"{what} ({member})")
    production = params["ProductionVariants"]
    shadows = params.get("ShadowProductionVariants") or []
    names = [v["VariantName"] for v in production + shadows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise validation(
            f"The variant names {duplicates} are not unique: each production and shadow variant "
            "of an endpoint configuration needs its own name."
        )
    if shadows and (len(production) != 1 or len(shadows) != 1):
        raise validation(
            "An endpoint configuration with ShadowProductionVariants must have exactly one "
            "production variant and one shadow variant."
        )
    for variant in production:
        _check_variant(ctx, variant, shadow=False)
    for variant in shadows:
        _check_variant(ctx, variant, shadow=True)
    if sum(v.get("InitialVariantWeight", 1.0) for v in production) <= 0:
        raise validation("The sum of the production variants' InitialVariantWeight must be greater than 0.")
    capture = params.get("DataCaptureConfig")
    if capture:
        check_s3_uri(ctx.backends, ctx.account_id, capture["DestinationS3Uri"], "DataCaptureConfig.DestinationS3Uri")


def _create(ctx: Context, params: dict, data: dict) -> None:
    check(ctx, params)
    data.pop("LastModifiedTime", None)  # a configuration never changes


ENDPOINT_CONFIG = Kind(
    "EndpointConfig",
    "endpoint-config",
    label="endpoint configuration",
    operations=("Create", "Describe", "List", "Delete"),
    on_create=_create,
).register()
