"""Resources that are pure records on AWS too: nothing runs when they are created.

Each is declared once; :mod:`selfmaker.services.kinds` gives it Create,
Describe, List, Update and Delete with AWS's semantics. Families that add
behaviour (the registry's versions, hosting's endpoints) build on these.
"""

from __future__ import annotations

from .kinds import Kind


def _update_code_repository(ctx, params, record):
    # GitConfigForUpdate carries only SecretArn: it changes the stored GitConfig, never replaces it.
    if "GitConfig" in params:
        record.data.setdefault("GitConfig", {}).update(params["GitConfig"])


MODEL = Kind("Model", "model", operations=("Create", "Describe", "List", "Delete"), search_type="Model").register()

CODE_REPOSITORY = Kind(
    "CodeRepository", "code-repository", label="code repository", list_operation="ListCodeRepositories",
    not_found="Cannot find CodeRepository with name {name}.",
    exists="CodeRepository {name} already exists.", on_update=_update_code_repository,
).register()
