"""Resources that are pure records on AWS too: nothing runs when they are created.

Each is declared once; :mod:`selfmaker.services.kinds` gives it Create,
Describe, List, Update and Delete with AWS's semantics. Families that add
behaviour (the registry's versions, hosting's endpoints) build on these.
"""

from __future__ import annotations

from ..objects.access import check_s3_uri
from ..server.errors import AWSError, validation
from .kinds import Kind
from .notebooks import git_urls


def _create_code_repository(ctx, params, data):
    # Checked here, not first at a notebook instance's clone: a repository that cannot be cloned is refused.
    git_urls.refuse_secret(params["GitConfig"])
    git_urls.check_url(params["GitConfig"]["RepositoryUrl"])
    if params["GitConfig"].get("Branch"):
        git_urls.check_branch(params["GitConfig"]["Branch"])


def _update_code_repository(ctx, params, record):
    # GitConfigForUpdate carries only SecretArn: it changes the stored GitConfig, never replaces it.
    if "GitConfig" in params:
        git_urls.refuse_secret(params["GitConfig"])
        record.data.setdefault("GitConfig", {}).update(params["GitConfig"])


def model_data_uris(params: dict) -> list[tuple[str, str]]:
    """(member, URI) of every S3 location a Model's containers read: model data, additional model data
    and a ``SAGEMAKER_SUBMIT_DIRECTORY`` code archive in S3."""
    found = []
    containers = [("PrimaryContainer", params.get("PrimaryContainer"))]
    containers += [(f"Containers[{i}]", c) for i, c in enumerate(params.get("Containers") or [])]
    for where, container in containers:
        if not container:
            continue
        if container.get("ModelDataUrl"):
            found.append((f"{where}.ModelDataUrl", container["ModelDataUrl"]))
        source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
        if source.get("S3Uri"):
            found.append((f"{where}.ModelDataSource.S3DataSource.S3Uri", source["S3Uri"]))
        for i, extra in enumerate(container.get("AdditionalModelDataSources") or []):
            uri = (extra.get("S3DataSource") or {}).get("S3Uri")
            if uri:
                found.append((f"{where}.AdditionalModelDataSources[{i}].S3DataSource.S3Uri", uri))
        submit = (container.get("Environment") or {}).get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        if submit.startswith("s3://"):
            found.append((f"{where}.Environment.SAGEMAKER_SUBMIT_DIRECTORY", submit))
    return found


def _check_model_data(ctx, params: dict, data: dict) -> None:
    # As AWS does at CreateModel, refuse model data the model's account cannot read (another account's
    # bucket); the servers that load it check again at use, through the account's view of the store.
    for member, uri in model_data_uris(params):
        try:
            check_s3_uri(ctx.backends, ctx.account_id, uri, member)
        except AWSError as err:
            raise validation(f"Could not access model data at {uri}. {err.message}") from None


MODEL = Kind(
    "Model",
    "model",
    operations=("Create", "Describe", "List", "Delete"),
    search_type="Model",
    on_create=_check_model_data,
).register()

CODE_REPOSITORY = Kind(
    "CodeRepository",
    "code-repository",
    label="code repository",
    list_operation="ListCodeRepositories",
    not_found="Cannot find CodeRepository with name {name}.",
    exists="CodeRepository {name} already exists.",
    on_create=_create_code_repository,
    on_update=_update_code_repository,
).register()
