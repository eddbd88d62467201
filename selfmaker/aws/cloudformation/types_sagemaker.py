"""AWS::SageMaker::* resource types, each made through SelfMaker's own SageMaker operations.

Ref, Fn::GetAtt, and which property changes update in place or replace, are as the CloudFormation resource
reference documents them per type (summarised in docs/cloudformation.md). Stack-level tags are added to the
resource's own Tags, as CloudFormation propagates them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from ...server.errors import AWSError
from ...server.models import operation_model
from .resource_types import Action, ResourceFailed, ResourceType, api_params, not_found

SM = "sagemaker"


def _tags(action: Action) -> list:
    own = list(action.properties.get("Tags") or [])
    keys = {t.get("Key") for t in own}
    return own + [t for t in action.stack_tags if t["Key"] not in keys]


def _describe(action: Action, noun: str, name_member: str) -> dict | None:
    try:
        return action.call(SM, f"Describe{noun}", {name_member: action.state["name"]})
    except AWSError as err:
        if not_found(err):
            return None
        raise


def sagemaker_type(
    type_name: str,
    noun: str,
    *,
    ref: str = "arn",  # what Ref returns: "arn" or "name"
    attributes: dict[str, str] | None = None,  # GetAtt name -> "name", "arn" or a Describe member
    status: tuple[str, set[str], set[str]] | None = None,  # (member, ready, failed) when creation is asynchronous
    async_delete: bool = False,
    updatable: set[str] | None = None,
    update: Callable[[Action], bool] | None = None,
    to_params: Callable[[Action, dict], dict] | None = None,
    before_delete: Callable[[Action, dict | None], bool] | None = None,
    delete_params: Callable[[Action], dict] | None = None,  # more members the Delete operation needs
    extra_properties: set[str] = frozenset(),  # type: ignore[assignment]
    description: str = "",
) -> ResourceType:
    """A type whose properties are its Create operation's input (as most SageMaker types' are)."""
    name_member = f"{noun}Name"
    create_op = f"Create{noun}"
    allowed = set(operation_model(SM, create_op).input_shape.members) - {"ClientToken", "ClientRequestToken"}
    allowed |= set(extra_properties)
    attributes = attributes or {name_member: "name"}
    status_member, ready, failed = status or (None, set(), set())

    def record_attributes(action: Action, described: dict | None) -> None:
        arn = (described or {}).get(f"{noun}Arn") or action.state.get("arn")
        action.state["arn"] = arn
        action.physical_id = arn if ref == "arn" else action.state["name"]
        for attribute, source in attributes.items():
            value = {"name": action.state["name"], "arn": arn}.get(source, (described or {}).get(source))
            if value is not None:
                action.attributes[attribute] = value.isoformat() if hasattr(value, "isoformat") else value

    def wait_ready(action: Action) -> bool:
        described = _describe(action, noun, name_member)
        if described is None:
            raise ResourceFailed(f"{noun} {action.state['name']} disappeared while it was being made")
        current = described.get(status_member) if status_member else None
        if status_member and current in failed:
            raise ResourceFailed(described.get("FailureReason") or f"{noun} {action.state['name']} is {current}")
        if status_member and current not in ready:
            return False
        record_attributes(action, described)
        return True

    def create(action: Action) -> bool:
        if "name" not in action.state:
            action.state["name"] = action.name(name_member, 63)
            action.state["called"] = False
        if not action.state["called"]:
            params = {**action.properties, name_member: action.state["name"]}
            if "Tags" in allowed and (tags := _tags(action)):
                params["Tags"] = tags
            if to_params:
                params = to_params(action, params)
            params = api_params(SM, create_op, params)
            try:
                result = action.call(SM, create_op, params)
            except AWSError as err:
                # A retry after a crash between the call and the state's save finds its own resource there.
                if not (err.exists and action.state.get("attempts", 0) > 1):
                    # Nothing was made: forget the name, so a rollback never deletes a same-named resource
                    # that is not the stack's.
                    action.state.pop("name", None)
                    raise
                result = {}
            action.state["called"] = True
            action.state["arn"] = result.get(f"{noun}Arn")
        return wait_ready(action)

    def delete(action: Action) -> bool:
        if "name" not in action.state:
            physical = action.physical_id or ""
            action.state["name"] = physical.rsplit("/", 1)[-1] if ref == "arn" else physical
        if not action.state.get("delete_called"):
            described = _describe(action, noun, name_member)
            if described is None:
                return True
            if before_delete and not before_delete(action, described):
                return False
            try:
                params = {name_member: action.state["name"], **(delete_params(action) if delete_params else {})}
                action.call(SM, f"Delete{noun}", params)
            except AWSError as err:
                if not not_found(err):
                    raise
            action.state["delete_called"] = True
        return not async_delete or _describe(action, noun, name_member) is None

    def update_in_place(action: Action) -> bool:
        if not action.state.get("tags_done"):
            _update_tags(action)
            action.state["tags_done"] = True
        if update is not None and not update(action):
            return False
        return wait_ready(action)

    updatable_set = set(updatable or ()) | {"Tags"}
    return ResourceType(
        name=type_name,
        create=create,
        delete=delete,
        update=update_in_place,
        updatable=frozenset(updatable_set & allowed),
        attributes=frozenset(attributes),
        name_property=name_member,
        properties=frozenset(allowed),
        description=description,
    )


def _update_tags(action: Action) -> None:
    arn = action.state.get("arn")
    old = {t["Key"]: t.get("Value", "") for t in (action.previous or {}).get("Tags") or []}
    new = {t["Key"]: t.get("Value", "") for t in action.properties.get("Tags") or []}
    gone = sorted(set(old) - set(new))
    if gone:
        action.call(SM, "DeleteTags", {"ResourceArn": arn, "TagKeys": gone})
    changed = [{"Key": k, "Value": v} for k, v in new.items() if old.get(k) != v]
    if changed:
        action.call(SM, "AddTags", {"ResourceArn": arn, "Tags": changed})


# -- Model, EndpointConfig: every change but tags replaces them -------------------------------------------

MODEL = sagemaker_type(
    "AWS::SageMaker::Model",
    "Model",
    description="a model (its containers are served by endpoints and transform jobs)",
).register()

ENDPOINT_CONFIG = sagemaker_type(
    "AWS::SageMaker::EndpointConfig",
    "EndpointConfig",
    description="an endpoint configuration",
).register()


# -- Endpoint: waits for InService; a new EndpointConfigName is an UpdateEndpoint ---------------------------


def _update_endpoint(action: Action) -> bool:
    if not action.state.get("update_called") and action.state.get("attempts", 0) > 1:
        # A retry after a crash: the UpdateEndpoint may have landed already.
        described = _describe(action, "Endpoint", "EndpointName") or {}
        if described.get("EndpointStatus") == "Updating" or described.get(
            "EndpointConfigName"
        ) == action.properties.get("EndpointConfigName"):
            action.state["update_called"] = True
    if not action.state.get("update_called"):
        if action.properties.get("EndpointConfigName") != (action.previous or {}).get("EndpointConfigName"):
            params = {
                "EndpointName": action.state["name"],
                "EndpointConfigName": action.properties["EndpointConfigName"],
            }
            for member in (
                "RetainAllVariantProperties",
                "ExcludeRetainedVariantProperties",
                "DeploymentConfig",
                "RetainDeploymentConfig",
            ):
                if member in action.properties:
                    params[member] = action.properties[member]
            action.call(SM, "UpdateEndpoint", api_params(SM, "UpdateEndpoint", params))
        action.state["update_called"] = True
    return True


ENDPOINT = sagemaker_type(
    "AWS::SageMaker::Endpoint",
    "Endpoint",
    attributes={"EndpointName": "name"},
    status=("EndpointStatus", {"InService"}, {"Failed", "OutOfService"}),
    async_delete=True,
    updatable={
        "EndpointConfigName",
        "RetainAllVariantProperties",
        "ExcludeRetainedVariantProperties",
        "DeploymentConfig",
        "RetainDeploymentConfig",
    },
    update=_update_endpoint,
    extra_properties={"RetainAllVariantProperties", "ExcludeRetainedVariantProperties", "RetainDeploymentConfig"},
    to_params=lambda action, params: {
        k: v
        for k, v in params.items()
        if k not in ("RetainAllVariantProperties", "ExcludeRetainedVariantProperties", "RetainDeploymentConfig")
    },
    description="an endpoint, created when InService; a new EndpointConfigName updates it in place",
).register()


# -- NotebookInstance: stopped to be updated or deleted -------------------------------------------------------

NOTEBOOK_UPDATABLE = {
    "InstanceType",
    "RoleArn",
    "LifecycleConfigName",
    "VolumeSizeInGB",
    "AcceleratorTypes",
    "DefaultCodeRepository",
    "AdditionalCodeRepositories",
    "RootAccess",
    "InstanceMetadataServiceConfiguration",
}


def _notebook_status(action: Action) -> str | None:
    described = _describe(action, "NotebookInstance", "NotebookInstanceName")
    return described["NotebookInstanceStatus"] if described else None


def _stopped(action: Action) -> bool:
    """Stop the instance (once) and say whether it is stopped (or failed: it then takes updates and deletes)."""
    status = _notebook_status(action)
    if status in ("InService", "Pending") and not action.state.get("stop_called"):
        if status == "Pending":
            return False  # AWS stops an instance only once it is InService
        action.call(SM, "StopNotebookInstance", {"NotebookInstanceName": action.state["name"]})
        action.state["stop_called"] = True
        return False
    return status in ("Stopped", "Failed", None)


def _update_notebook(action: Action) -> bool:
    phase = action.state.get("phase", "stopping")
    if phase == "stopping":
        if not _stopped(action):
            return False
        params = {"NotebookInstanceName": action.state["name"]}
        for member in NOTEBOOK_UPDATABLE:
            if member in action.properties:
                params[member] = action.properties[member]
            elif member in (action.previous or {}) and member == "LifecycleConfigName":
                params["DisassociateLifecycleConfig"] = True
        action.call(SM, "UpdateNotebookInstance", api_params(SM, "UpdateNotebookInstance", params))
        action.state["phase"] = "starting"
    if action.state["phase"] == "starting":
        status = _notebook_status(action)
        if status == "Updating":
            return False
        if status in ("Stopped", "Failed"):  # not started yet (a retry after a crash may find it Pending)
            action.call(SM, "StartNotebookInstance", {"NotebookInstanceName": action.state["name"]})
        action.state["phase"] = "started"
    return True


NOTEBOOK_INSTANCE = sagemaker_type(
    "AWS::SageMaker::NotebookInstance",
    "NotebookInstance",
    attributes={"NotebookInstanceName": "name"},
    status=("NotebookInstanceStatus", {"InService"}, {"Failed"}),
    async_delete=True,
    updatable=NOTEBOOK_UPDATABLE,
    update=_update_notebook,
    before_delete=lambda action, described: _stopped(action),
    description="a notebook instance (JupyterLab in the sandbox); stopped, updated and started again on an update",
).register()


def _update_lifecycle_config(action: Action) -> bool:
    params = {"NotebookInstanceLifecycleConfigName": action.state["name"]}
    for member in ("OnCreate", "OnStart"):
        params[member] = action.properties.get(member, [])
    action.call(
        SM, "UpdateNotebookInstanceLifecycleConfig", api_params(SM, "UpdateNotebookInstanceLifecycleConfig", params)
    )
    return True


NOTEBOOK_LIFECYCLE_CONFIG = sagemaker_type(
    "AWS::SageMaker::NotebookInstanceLifecycleConfig",
    "NotebookInstanceLifecycleConfig",
    attributes={"NotebookInstanceLifecycleConfigName": "name"},
    updatable={"OnCreate", "OnStart"},
    update=_update_lifecycle_config,
    description="a notebook instance lifecycle configuration; its scripts update in place",
).register()


# -- the model registry -------------------------------------------------------------------------------------


def _group_params(action: Action, params: dict) -> dict:
    params.pop("ModelPackageGroupPolicy", None)
    return params


def _put_group_policy(action: Action) -> bool:
    policy = action.properties.get("ModelPackageGroupPolicy")
    if policy is None and (action.previous or {}).get("ModelPackageGroupPolicy") is not None:
        action.call(SM, "DeleteModelPackageGroupPolicy", {"ModelPackageGroupName": action.state["name"]})
    elif policy is not None and policy != (action.previous or {}).get("ModelPackageGroupPolicy"):
        document = policy if isinstance(policy, str) else json.dumps(policy)
        action.call(
            SM,
            "PutModelPackageGroupPolicy",
            {"ModelPackageGroupName": action.state["name"], "ResourcePolicy": document},
        )
    return True


_group = sagemaker_type(
    "AWS::SageMaker::ModelPackageGroup",
    "ModelPackageGroup",
    attributes={
        "ModelPackageGroupArn": "arn",
        "CreationTime": "CreationTime",
        "ModelPackageGroupStatus": "ModelPackageGroupStatus",
    },
    updatable={"ModelPackageGroupPolicy"},
    update=_put_group_policy,
    to_params=_group_params,
    extra_properties={"ModelPackageGroupPolicy"},
    description="a model package group (the model registry); its resource policy updates in place",
)


def _create_group(action: Action) -> bool:
    if not _group.create(action):
        return False
    if action.properties.get("ModelPackageGroupPolicy") is not None and not action.state.get("policy_put"):
        _put_group_policy(replace(action, previous={}))
        action.state["policy_put"] = True
    return True


MODEL_PACKAGE_GROUP = replace(_group, create=_create_group).register()  # the policy is its own call, after


def _update_model_package(action: Action) -> bool:
    params = {"ModelPackageArn": action.state["arn"]}
    for member in ("ModelApprovalStatus", "ApprovalDescription", "CustomerMetadataProperties"):
        if member in action.properties and action.properties[member] != (action.previous or {}).get(member):
            params[member] = action.properties[member]
    if len(params) > 1:
        action.call(SM, "UpdateModelPackage", api_params(SM, "UpdateModelPackage", params))
    return True


def _model_package_type() -> ResourceType:
    # A versioned package has no name of its own: its ARN is its id (Ref), and it is described by ARN.
    allowed = set(operation_model(SM, "CreateModelPackage").input_shape.members) - {"ClientToken"}
    allowed.discard("ModelPackageName")

    def create(action: Action) -> bool:
        if not action.state.get("arn"):
            params = api_params(
                SM, "CreateModelPackage", {**action.properties, **({"Tags": t} if (t := _tags(action)) else {})}
            )
            action.state["arn"] = action.call(SM, "CreateModelPackage", params)["ModelPackageArn"]
        described = action.call(SM, "DescribeModelPackage", {"ModelPackageName": action.state["arn"]})
        if described["ModelPackageStatus"] == "Failed":
            raise ResourceFailed(f"model package {action.state['arn']} failed")
        action.state["name"] = action.state["arn"]
        action.physical_id = action.state["arn"]
        action.attributes.update(
            ModelPackageArn=action.state["arn"],
            ModelPackageStatus=described["ModelPackageStatus"],
            ModelPackageVersion=described.get("ModelPackageVersion"),
            CreationTime=described["CreationTime"].isoformat()
            if hasattr(described["CreationTime"], "isoformat")
            else described["CreationTime"],
        )
        return described["ModelPackageStatus"] == "Completed"

    def delete(action: Action) -> bool:
        try:
            action.call(SM, "DeleteModelPackage", {"ModelPackageName": action.physical_id})
        except AWSError as err:
            if not not_found(err):
                raise
        return True

    def update(action: Action) -> bool:
        action.state["arn"] = action.physical_id
        _update_tags(action)
        _update_model_package(action)
        return create(action)

    return ResourceType(
        name="AWS::SageMaker::ModelPackage",
        create=create,
        delete=delete,
        update=update,
        updatable=frozenset({"ModelApprovalStatus", "ApprovalDescription", "CustomerMetadataProperties", "Tags"}),
        attributes=frozenset({"ModelPackageArn", "ModelPackageStatus", "ModelPackageVersion", "CreationTime"}),
        properties=frozenset(allowed),
        description="a model package (a version in a group); approval status updates in place",
    )


MODEL_PACKAGE = _model_package_type().register()


# -- Pipeline: its definition from the template or from S3 ----------------------------------------------------

PIPELINE_PROPERTIES = {
    "PipelineName",
    "PipelineDisplayName",
    "PipelineDescription",
    "PipelineDefinition",
    "RoleArn",
    "Tags",
    "ParallelismConfiguration",
}


def _pipeline_definition(definition) -> dict:
    if not isinstance(definition, dict) or len(definition) != 1:
        raise ResourceFailed("PipelineDefinition takes one of PipelineDefinitionBody or PipelineDefinitionS3Location")
    if "PipelineDefinitionBody" in definition:
        body = definition["PipelineDefinitionBody"]
        return {"PipelineDefinition": body if isinstance(body, str) else json.dumps(body)}
    location = definition.get("PipelineDefinitionS3Location")
    if isinstance(location, dict) and "Bucket" in location and "Key" in location:
        out = {"Bucket": location["Bucket"], "ObjectKey": location["Key"]}
        if "Version" in location:
            out["VersionId"] = location["Version"]
        return {"PipelineDefinitionS3Location": out}
    raise ResourceFailed("PipelineDefinition takes one of PipelineDefinitionBody or PipelineDefinitionS3Location")


def _pipeline_params(action: Action, params: dict) -> dict:
    definition = params.pop("PipelineDefinition", None)
    if definition is None:
        raise ResourceFailed("Property PipelineDefinition cannot be empty.")
    params.update(_pipeline_definition(definition))
    params["ClientRequestToken"] = _pipeline_token(action, "create")
    return params


def _pipeline_token(action: Action, verb: str) -> str:
    """The idempotency token of the pipeline's create or delete: the same on a retry of the same stack step."""
    return f"{action.stack_id.rsplit('/', 1)[-1]}-{action.logical_id}-{verb}"[:128]


def _update_pipeline(action: Action) -> bool:
    params = {"PipelineName": action.state["name"]}
    for member in ("PipelineDisplayName", "PipelineDescription", "RoleArn", "ParallelismConfiguration"):
        if member in action.properties:
            params[member] = action.properties[member]
    if "PipelineDefinition" in action.properties:
        params.update(_pipeline_definition(action.properties["PipelineDefinition"]))
    action.call(SM, "UpdatePipeline", api_params(SM, "UpdatePipeline", params))
    return True


def _pipeline_type() -> ResourceType:
    base = sagemaker_type(
        "AWS::SageMaker::Pipeline",
        "Pipeline",
        ref="name",
        attributes={},
        updatable={
            "PipelineDisplayName",
            "PipelineDescription",
            "PipelineDefinition",
            "RoleArn",
            "ParallelismConfiguration",
        },
        update=_update_pipeline,
        to_params=_pipeline_params,
        delete_params=lambda action: {"ClientRequestToken": _pipeline_token(action, "delete")},
        extra_properties={"PipelineDefinition"},
        description="a pipeline; its definition (PipelineDefinitionBody or PipelineDefinitionS3Location) updates in place",
    )
    return replace(base, properties=frozenset(PIPELINE_PROPERTIES))


PIPELINE = _pipeline_type().register()


# -- FeatureGroup ------------------------------------------------------------------------------------------

FEATURE_GROUP = sagemaker_type(
    "AWS::SageMaker::FeatureGroup",
    "FeatureGroup",
    ref="name",
    attributes={"FeatureGroupArn": "arn", "CreationTime": "CreationTime", "FeatureGroupStatus": "FeatureGroupStatus"},
    status=("FeatureGroupStatus", {"Created"}, {"CreateFailed"}),
    async_delete=True,
    description="a feature group (online and offline stores), created when Created",
).register()


CODE_REPOSITORY = sagemaker_type(
    "AWS::SageMaker::CodeRepository",
    "CodeRepository",
    attributes={"CodeRepositoryName": "name"},
    description="a Git repository entry for notebook instances",
).register()

DEVICE_FLEET = sagemaker_type(
    "AWS::SageMaker::DeviceFleet",
    "DeviceFleet",
    ref="name",
    attributes={},
    description="an Edge Manager device fleet",
).register()
