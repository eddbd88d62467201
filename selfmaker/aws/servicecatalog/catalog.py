"""Portfolios, products, provisioning artifacts, launch paths and the product searches.

Records live in the resource store (kinds ``ServiceCatalogPortfolio`` and ``ServiceCatalogProduct``, named by
their ids), one account and region each: another account's id names nothing here. A product's provisioning
artifacts are CloudFormation templates, read when the artifact is made from the caller's own bucket in
SelfMaker's S3 (``LoadTemplateFromURL``, as CreateStack's TemplateURL) and validated by SelfMaker's
CloudFormation, and kept in the product's record. A product is launchable through each portfolio it is in
(its launch paths). Products can also be installed by SelfMaker itself (:func:`install_product`): SageMaker's
built-in project templates, owned by "Amazon SageMaker".
"""

from __future__ import annotations

import hashlib
import secrets
import string

from ...server.errors import AWSError
from ...server.operations import Context, call, operation
from ...store import tag_store
from ...store.resources import AlreadyExists, Record, now
from ..cloudformation import inputs, templates

PORTFOLIO = "ServiceCatalogPortfolio"
PRODUCT = "ServiceCatalogProduct"
SERVICE = "servicecatalog"
_ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_PAGE = 100


def new_id(prefix: str, length: int = 13) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def stable_id(prefix: str, *parts: str, length: int = 13) -> str:
    """An id derived from ``parts``: the same built-in product keeps its ids across Disable and Enable."""
    digest = int.from_bytes(hashlib.sha256("\n".join(parts).encode()).digest(), "big")
    out = []
    for _ in range(length):
        digest, index = divmod(digest, len(_ID_ALPHABET))
        out.append(_ID_ALPHABET[index])
    return prefix + "".join(out)


def not_found(what: str) -> AWSError:
    return AWSError("ResourceNotFoundException", what)


def invalid(message: str) -> AWSError:
    return AWSError("InvalidParametersException", message)


def _ctx_arn(ctx: Context, resource: str) -> str:
    return ctx.arn("catalog", resource)


def _too_many_tags() -> AWSError:
    return AWSError("LimitExceededException", "A resource can have at most 50 tags.")


def _tags(ctx: Context, arn: str) -> list[dict]:
    with ctx.store.read() as conn:
        return tag_store.read(conn, arn)


def _get(ctx: Context, kind: str, resource_id: str | None, what: str, conn=None, lock: bool = False) -> Record:
    record = None
    if resource_id:
        record = ctx.backends.resources.get(ctx.account_id, ctx.region, kind, name=resource_id, conn=conn, lock=lock)
    if record is None:
        raise not_found(f"{what} {resource_id} not found.")
    return record


def _all(ctx: Context, kind: str) -> list[Record]:
    return list(ctx.backends.resources.iterate(ctx.account_id, ctx.region, [kind]))


def _page(ctx: Context, items: list, params: dict, scope: list, token_member: str = "PageToken") -> tuple[list, dict]:
    """One page of ``items`` (already in order) and the NextPageToken member when more remain."""
    size = params.get("PageSize") or 20
    start = 0
    if params.get(token_member):
        start = ctx.backends.resources.read_page_token(
            params[token_member], scope, invalid("The page token is not valid.")
        )["at"]
    page = items[start : start + size]
    more = (
        {"NextPageToken": ctx.backends.resources.page_token(scope, at=start + size)}
        if start + size < len(items)
        else {}
    )
    return page, more


# -- portfolios ---------------------------------------------------------------------------------------------


def portfolio_detail(record: Record) -> dict:
    data = record.data
    return {k: data[k] for k in ("Id", "ARN", "DisplayName", "Description", "CreatedTime", "ProviderName") if k in data}


def create_portfolio_record(
    ctx: Context,
    display_name: str,
    provider: str,
    description: str | None = None,
    portfolio_id: str | None = None,
    conn=None,
) -> Record:
    portfolio_id = portfolio_id or new_id("port-")
    arn = _ctx_arn(ctx, f"portfolio/{portfolio_id}")
    data = {
        "Id": portfolio_id,
        "ARN": arn,
        "DisplayName": display_name,
        "ProviderName": provider,
        "CreatedTime": now(),
        "_products": [],
        "_principals": [],
    }
    if description:
        data["Description"] = description
    return ctx.backends.resources.create(
        account_id=ctx.account_id, region=ctx.region, kind=PORTFOLIO, name=portfolio_id, arn=arn, data=data, conn=conn
    )


@operation(SERVICE, "CreatePortfolio")
def create_portfolio(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = create_portfolio_record(
            ctx, params["DisplayName"], params["ProviderName"], params.get("Description"), conn=conn
        )
        if params.get("Tags"):
            tag_store.add(conn, record.arn, params["Tags"], _too_many_tags())
    return {"PortfolioDetail": portfolio_detail(record), "Tags": params.get("Tags") or []}


@operation(SERVICE, "DescribePortfolio")
def describe_portfolio(ctx: Context, params: dict) -> dict:
    record = _get(ctx, PORTFOLIO, params["Id"], "Portfolio")
    return {
        "PortfolioDetail": portfolio_detail(record),
        "Tags": _tags(ctx, record.arn),
        "TagOptions": [],
        "Budgets": [],
    }


@operation(SERVICE, "ListPortfolios")
def list_portfolios(ctx: Context, params: dict) -> dict:
    records = sorted(_all(ctx, PORTFOLIO), key=lambda r: (r.created_at, r.name))
    page, more = _page(ctx, records, params, ["ListPortfolios"])
    return {"PortfolioDetails": [portfolio_detail(r) for r in page], **more}


@operation(SERVICE, "DeletePortfolio")
def delete_portfolio(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = _get(ctx, PORTFOLIO, params["Id"], "Portfolio", conn=conn, lock=True)
        if record.data["_products"] or record.data["_principals"]:
            raise AWSError(
                "ResourceInUseException",
                f"Portfolio {record.name} still has products or principals associated; disassociate them first.",
            )
        ctx.backends.resources.delete(record.arn, conn=conn)
    return {}


def _associate(ctx: Context, portfolio_id: str, member: str, value: dict, key: str) -> None:
    with ctx.store.write() as conn:
        record = _get(ctx, PORTFOLIO, portfolio_id, "Portfolio", conn=conn, lock=True)
        items = [i for i in record.data[member] if i[key] != value[key]]
        record.data[member] = [*items, value]
        ctx.backends.resources.save(record, conn=conn)


def _disassociate(ctx: Context, portfolio_id: str, member: str, key: str, value: str) -> None:
    with ctx.store.write() as conn:
        record = _get(ctx, PORTFOLIO, portfolio_id, "Portfolio", conn=conn, lock=True)
        items = [i for i in record.data[member] if i[key] != value]
        if len(items) == len(record.data[member]):
            raise not_found(f"{value} is not associated with portfolio {portfolio_id}.")
        record.data[member] = items
        ctx.backends.resources.save(record, conn=conn)


@operation(SERVICE, "AssociateProductWithPortfolio")
def associate_product(ctx: Context, params: dict) -> dict:
    if params.get("SourcePortfolioId"):
        raise invalid("SourcePortfolioId (imported portfolios) is not supported by SelfMaker's Service Catalog.")
    _get(ctx, PRODUCT, params["ProductId"], "Product")
    _associate(ctx, params["PortfolioId"], "_products", {"ProductId": params["ProductId"]}, "ProductId")
    return {}


@operation(SERVICE, "DisassociateProductFromPortfolio")
def disassociate_product(ctx: Context, params: dict) -> dict:
    _disassociate(ctx, params["PortfolioId"], "_products", "ProductId", params["ProductId"])
    return {}


@operation(SERVICE, "AssociatePrincipalWithPortfolio")
def associate_principal(ctx: Context, params: dict) -> dict:
    arn = params["PrincipalARN"]
    principal_type = params["PrincipalType"]
    if principal_type == "IAM" and not arn.startswith(f"arn:aws:iam::{ctx.account_id}:"):
        raise invalid(f"PrincipalARN {arn} is not an IAM principal of this account.")
    _associate(
        ctx,
        params["PortfolioId"],
        "_principals",
        {"PrincipalARN": arn, "PrincipalType": principal_type},
        "PrincipalARN",
    )
    return {}


@operation(SERVICE, "DisassociatePrincipalFromPortfolio")
def disassociate_principal(ctx: Context, params: dict) -> dict:
    _disassociate(ctx, params["PortfolioId"], "_principals", "PrincipalARN", params["PrincipalARN"])
    return {}


@operation(SERVICE, "ListPrincipalsForPortfolio")
def list_principals(ctx: Context, params: dict) -> dict:
    record = _get(ctx, PORTFOLIO, params["PortfolioId"], "Portfolio")
    page, more = _page(ctx, record.data["_principals"], params, ["ListPrincipalsForPortfolio", record.name])
    return {"Principals": page, **more}


@operation(SERVICE, "ListPortfoliosForProduct")
def list_portfolios_for_product(ctx: Context, params: dict) -> dict:
    _get(ctx, PRODUCT, params["ProductId"], "Product")
    records = portfolios_of(ctx, params["ProductId"])
    page, more = _page(ctx, records, params, ["ListPortfoliosForProduct", params["ProductId"]])
    return {"PortfolioDetails": [portfolio_detail(r) for r in page], **more}


def portfolios_of(ctx: Context, product_id: str) -> list[Record]:
    return [
        r
        for r in sorted(_all(ctx, PORTFOLIO), key=lambda r: (r.created_at, r.name))
        if any(p["ProductId"] == product_id for p in r.data["_products"])
    ]


# -- products and their provisioning artifacts -------------------------------------------------------------


def _template_of(ctx: Context, properties: dict) -> str:
    """The CloudFormation template a provisioning artifact's Info names, read and checked now."""
    info = properties.get("Info") or {}
    if properties.get("Type", "CLOUD_FORMATION_TEMPLATE") != "CLOUD_FORMATION_TEMPLATE":
        raise invalid(
            f"Provisioning artifact type {properties['Type']} is not supported by SelfMaker: it "
            "provisions CLOUD_FORMATION_TEMPLATE artifacts."
        )
    unknown = sorted(set(info) - {"LoadTemplateFromURL"})
    if unknown or "LoadTemplateFromURL" not in info:
        raise invalid(
            f"Info must hold LoadTemplateFromURL (SelfMaker does not take {', '.join(unknown) or 'nothing'})."
        )
    try:
        body = inputs.template_body(ctx, {"TemplateURL": info["LoadTemplateFromURL"]})
        if not properties.get("DisableTemplateValidation"):
            call(_cfn(ctx), "ValidateTemplate", {"TemplateBody": body})
    except AWSError as err:
        raise invalid(f"Invalid templateBody. {err.message}") from None
    return body


def _cfn(ctx: Context) -> Context:
    return Context(
        backends=ctx.backends,
        account_id=ctx.account_id,
        region=ctx.region,
        service="cloudformation",
        access_key=ctx.access_key,
    )


def artifact_entry(
    name: str,
    description: str,
    body: str,
    artifact_id: str | None = None,
    guidance: str = "DEFAULT",
    info: dict | None = None,
) -> dict:
    entry = {
        "Id": artifact_id or new_id("pa-"),
        "Name": name,
        "Description": description,
        "Type": "CLOUD_FORMATION_TEMPLATE",
        "CreatedTime": now(),
        "Active": True,
        "Guidance": guidance,
        "_template": body,
    }
    if info:
        entry["_info"] = info
    return entry


def artifact_detail(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.startswith("_") and v not in (None, "")}


def view_summary(record: Record, has_path: bool = True) -> dict:
    data = record.data
    summary = {
        "Id": data["ViewId"],
        "ProductId": record.name,
        "Name": data["Name"],
        "Owner": data["Owner"],
        "Type": data["ProductType"],
        "HasDefaultPath": has_path,
    }
    for member, source in (
        ("ShortDescription", "Description"),
        ("Distributor", "Distributor"),
        ("SupportEmail", "SupportEmail"),
        ("SupportDescription", "SupportDescription"),
        ("SupportUrl", "SupportUrl"),
    ):
        if data.get(source):
            summary[member] = data[source]
    return summary


def view_detail(record: Record) -> dict:
    return {
        "ProductViewSummary": view_summary(record),
        "Status": "AVAILABLE",
        "ProductARN": record.arn,
        "CreatedTime": record.data["CreatedTime"],
    }


def create_product_record(ctx: Context, params: dict, artifact: dict, conn, product_id: str | None = None) -> Record:
    product_id = product_id or new_id("prod-")
    arn = _ctx_arn(ctx, f"product/{product_id}")
    data = {
        "Id": product_id,
        "ViewId": stable_id("prodview-", ctx.account_id, product_id),
        "Name": params["Name"],
        "Owner": params["Owner"],
        "ProductType": params.get("ProductType") or "CLOUD_FORMATION_TEMPLATE",
        "CreatedTime": now(),
        "_artifacts": [artifact],
    }
    for member in ("Description", "Distributor", "SupportDescription", "SupportEmail", "SupportUrl"):
        if params.get(member):
            data[member] = params[member]
    try:
        return ctx.backends.resources.create(
            account_id=ctx.account_id, region=ctx.region, kind=PRODUCT, name=product_id, arn=arn, data=data, conn=conn
        )
    except AlreadyExists:
        raise AWSError("DuplicateResourceException", f"Product {product_id} already exists.") from None


@operation(SERVICE, "CreateProduct")
def create_product(ctx: Context, params: dict) -> dict:
    if params.get("SourceConnection"):
        raise invalid("SourceConnection (products synced from a code repository) is not supported by SelfMaker.")
    if (params.get("ProductType") or "CLOUD_FORMATION_TEMPLATE") != "CLOUD_FORMATION_TEMPLATE":
        raise invalid(
            f"ProductType {params['ProductType']} is not supported by SelfMaker: it provisions "
            "CLOUD_FORMATION_TEMPLATE products."
        )
    properties = params.get("ProvisioningArtifactParameters")
    if not properties:
        raise invalid("ProvisioningArtifactParameters is required for a CLOUD_FORMATION_TEMPLATE product.")
    body = _template_of(ctx, properties)
    artifact = artifact_entry(
        properties.get("Name") or "v1", properties.get("Description") or "", body, info=properties.get("Info")
    )
    with ctx.store.write() as conn:
        record = create_product_record(ctx, params, artifact, conn)
        if params.get("Tags"):
            tag_store.add(conn, record.arn, params["Tags"], _too_many_tags())
    return {
        "ProductViewDetail": view_detail(record),
        "ProvisioningArtifactDetail": artifact_detail(artifact),
        "Tags": params.get("Tags") or [],
    }


def product(ctx: Context, product_id: str | None = None, name: str | None = None) -> Record:
    """The caller's product named by id (or, failing that, by name)."""
    if product_id:
        return _get(ctx, PRODUCT, product_id, "Product")
    if name:
        for record in _all(ctx, PRODUCT):
            if record.data["Name"] == name:
                return record
        raise not_found(f"Product {name} not found.")
    raise invalid("Either ProductId or ProductName must be given.")


def artifact(record: Record, artifact_id: str | None = None, name: str | None = None) -> dict:
    """The product's artifact named by id or name; without either, its DEFAULT active one (the newest)."""
    entries = record.data["_artifacts"]
    if artifact_id or name:
        for entry in entries:
            if (artifact_id and entry["Id"] == artifact_id) or (not artifact_id and entry["Name"] == name):
                return entry
        raise not_found(f"Provisioning artifact {artifact_id or name} not found for product {record.name}.")
    active = [e for e in entries if e.get("Active", True)]
    if not active:
        raise invalid(f"Product {record.name} has no active provisioning artifact.")
    return active[-1]


def launch_paths(ctx: Context, record: Record) -> list[dict]:
    return [
        {
            "Id": stable_id("lpv3-", ctx.account_id, p.name, record.name),
            "Name": p.data["DisplayName"],
            "_portfolio": p.name,
        }
        for p in portfolios_of(ctx, record.name)
    ]


@operation(SERVICE, "DescribeProduct")
def describe_product(ctx: Context, params: dict) -> dict:
    record = product(ctx, params.get("Id"), params.get("Name"))
    paths = launch_paths(ctx, record)
    if not paths:  # an end user sees a product only through a portfolio it is in
        raise not_found(f"Product {record.name} is not in any portfolio of this account.")
    return {
        "ProductViewSummary": view_summary(record),
        "ProvisioningArtifacts": [
            {k: e[k] for k in ("Id", "Name", "Description", "CreatedTime", "Guidance") if e.get(k)}
            for e in record.data["_artifacts"]
            if e.get("Active", True)
        ],
        "Budgets": [],
        "LaunchPaths": [{"Id": p["Id"], "Name": p["Name"]} for p in paths],
    }


@operation(SERVICE, "DescribeProductAsAdmin")
def describe_product_as_admin(ctx: Context, params: dict) -> dict:
    record = product(ctx, params.get("Id"), params.get("Name"))
    summaries = [
        {"Id": e["Id"], "Name": e["Name"], "Description": e["Description"], "CreatedTime": e["CreatedTime"]}
        for e in record.data["_artifacts"]
    ]
    return {
        "ProductViewDetail": view_detail(record),
        "ProvisioningArtifactSummaries": summaries,
        "Tags": _tags(ctx, record.arn),
        "TagOptions": [],
        "Budgets": [],
    }


@operation(SERVICE, "DeleteProduct")
def delete_product(ctx: Context, params: dict) -> dict:
    record = _get(ctx, PRODUCT, params["Id"], "Product")
    if record.data.get("_builtin"):
        raise invalid(f"Product {record.name} is provided by Amazon SageMaker and cannot be deleted.")
    if portfolios_of(ctx, record.name):
        raise AWSError(
            "ResourceInUseException", f"Product {record.name} is associated with a portfolio; disassociate it first."
        )
    ctx.backends.resources.delete(record.arn)
    return {}


@operation(SERVICE, "CreateProvisioningArtifact")
def create_provisioning_artifact(ctx: Context, params: dict) -> dict:
    properties = params["Parameters"]
    body = _template_of(ctx, properties)
    entry = artifact_entry(
        properties.get("Name") or "", properties.get("Description") or "", body, info=properties.get("Info")
    )
    with ctx.store.write() as conn:
        record = _get(ctx, PRODUCT, params["ProductId"], "Product", conn=conn, lock=True)
        if record.data.get("_builtin"):
            raise invalid(f"Product {record.name} is provided by Amazon SageMaker and cannot be changed.")
        if any(e["Name"] == entry["Name"] for e in record.data["_artifacts"]):
            raise AWSError(
                "DuplicateResourceException",
                f"Provisioning artifact {entry['Name']} already exists for product {record.name}.",
            )
        record.data["_artifacts"].append(entry)
        ctx.backends.resources.save(record, conn=conn)
    return {
        "ProvisioningArtifactDetail": artifact_detail(entry),
        "Info": properties.get("Info") or {},
        "Status": "AVAILABLE",
    }


@operation(SERVICE, "DescribeProvisioningArtifact")
def describe_provisioning_artifact(ctx: Context, params: dict) -> dict:
    record = product(ctx, params.get("ProductId"), params.get("ProductName"))
    if not (params.get("ProvisioningArtifactId") or params.get("ProvisioningArtifactName")):
        raise invalid("Either ProvisioningArtifactId or ProvisioningArtifactName must be given.")
    entry = artifact(record, params.get("ProvisioningArtifactId"), params.get("ProvisioningArtifactName"))
    answer: dict = {
        "ProvisioningArtifactDetail": artifact_detail(entry),
        "Status": "AVAILABLE",
        "Info": entry.get("_info") or {},
    }
    if params.get("Verbose"):
        answer["Info"] = {**answer["Info"], "TemplateBody": entry["_template"]}
    if params.get("IncludeProvisioningArtifactParameters"):
        answer["ProvisioningArtifactParameters"] = template_parameters(entry["_template"])
    return answer


def template_parameters(body: str) -> list[dict]:
    declared = templates.parse(body, templates.MAX_URL_BYTES).get("Parameters") or {}
    out = []
    for key, spec in declared.items():
        item = {
            "ParameterKey": key,
            "ParameterType": str(spec.get("Type", "String")),
            "IsNoEcho": bool(spec.get("NoEcho", False)),
        }
        if "Default" in spec:
            item["DefaultValue"] = str(spec["Default"])
        if spec.get("Description"):
            item["Description"] = str(spec["Description"])
        if spec.get("AllowedValues"):
            item["ParameterConstraints"] = {"AllowedValues": [str(v) for v in spec["AllowedValues"]]}
        out.append(item)
    return out


@operation(SERVICE, "ListProvisioningArtifacts")
def list_provisioning_artifacts(ctx: Context, params: dict) -> dict:
    record = _get(ctx, PRODUCT, params["ProductId"], "Product")
    return {"ProvisioningArtifactDetails": [artifact_detail(e) for e in record.data["_artifacts"]]}


@operation(SERVICE, "ListLaunchPaths")
def list_launch_paths(ctx: Context, params: dict) -> dict:
    record = _get(ctx, PRODUCT, params["ProductId"], "Product")
    paths = [
        {"Id": p["Id"], "Name": p["Name"], "ConstraintSummaries": [], "Tags": []} for p in launch_paths(ctx, record)
    ]
    page, more = _page(ctx, paths, params, ["ListLaunchPaths", record.name])
    return {"LaunchPathSummaries": page, **more}


# -- searches ------------------------------------------------------------------------------------------------

SEARCHABLE = ("FullTextSearch", "Owner", "ProductType", "SourceProductId")


def _matches(record: Record, tags: list[dict], filters: dict) -> bool:
    data = record.data
    for key, values in (filters or {}).items():
        if key not in SEARCHABLE:
            raise invalid(f"Filter {key} is not valid; use one of {', '.join(SEARCHABLE)}.")
        if key == "SourceProductId":
            return False  # no product here is a copy of another
        if key == "Owner" and data["Owner"] not in values:
            return False
        if key == "ProductType" and data["ProductType"] not in values:
            return False
        if key == "FullTextSearch":
            # Service Catalog searches the product's text and its tags; Studio finds the templates it shows by
            # their sagemaker:studio-visibility tag this way.
            text = " ".join(
                [data["Name"], data["Owner"], data.get("Description", ""), data.get("Distributor", "")]
                + [f"{t['Key']} {t['Value']}" for t in tags]
            ).lower()
            if not any(v.lower() in text for v in values):
                return False
    return True


def _search(ctx: Context, params: dict, admin: bool) -> tuple[list[Record], dict]:
    found = []
    with ctx.store.read() as conn:
        for record in _all(ctx, PRODUCT):
            if not admin and not portfolios_of(ctx, record.name):
                continue
            if params.get("PortfolioId") and record.name not in {
                p["ProductId"] for p in _get(ctx, PORTFOLIO, params["PortfolioId"], "Portfolio").data["_products"]
            }:
                continue
            if _matches(record, tag_store.read(conn, record.arn), params.get("Filters") or {}):
                found.append(record)
    key = {"Title": lambda r: r.data["Name"].lower(), "VersionCount": lambda r: len(r.data["_artifacts"])}.get(
        params.get("SortBy") or "", lambda r: (r.created_at, r.name)
    )
    found.sort(key=key, reverse=params.get("SortOrder") == "DESCENDING")
    scope = [
        "SearchProducts",
        admin,
        params.get("Filters"),
        params.get("SortBy"),
        params.get("SortOrder"),
        params.get("PortfolioId"),
    ]
    return _page(ctx, found, params, scope)


@operation(SERVICE, "SearchProducts")
def search_products(ctx: Context, params: dict) -> dict:
    page, more = _search(ctx, params, admin=False)
    owners: dict[str, int] = {}
    for record in page:
        owners[record.data["Owner"]] = owners.get(record.data["Owner"], 0) + 1
    return {
        "ProductViewSummaries": [view_summary(r) for r in page],
        "ProductViewAggregations": {"Owner": [{"Value": k, "ApproximateCount": v} for k, v in owners.items()]},
        **more,
    }


@operation(SERVICE, "SearchProductsAsAdmin")
def search_products_as_admin(ctx: Context, params: dict) -> dict:
    if params.get("ProductSource"):
        raise invalid("ProductSource ACCOUNT (imported products) is not supported by SelfMaker.")
    page, more = _search(ctx, params, admin=True)
    return {"ProductViewDetails": [view_detail(r) for r in page], **more}


# -- SelfMaker's own products (SageMaker's built-in project templates) --------------------------------------


def install_product(
    ctx: Context, portfolio_id: str, key: str, product: dict, artifacts: list[tuple[str, str, str]], tags: list[dict]
) -> str:
    """Make (once) a product SelfMaker provides, with stable ids, and put it in ``portfolio_id``; its id."""
    product_id = stable_id("prod-", ctx.account_id, ctx.region, key)
    entries = [
        artifact_entry(name, description, body, artifact_id=stable_id("pa-", ctx.account_id, key, name))
        for name, description, body in artifacts
    ]
    with ctx.store.write() as conn:
        record = ctx.backends.resources.get(ctx.account_id, ctx.region, PRODUCT, name=product_id, conn=conn, lock=True)
        if record is None:
            record = create_product_record(ctx, product, entries[0], conn, product_id=product_id)
        record.data["_artifacts"] = entries  # a newer SelfMaker's templates replace the older ones
        record.data["_builtin"] = True
        ctx.backends.resources.save(record, conn=conn)
        tag_store.add(conn, record.arn, tags)
        portfolio = _get(ctx, PORTFOLIO, portfolio_id, "Portfolio", conn=conn, lock=True)
        if not any(p["ProductId"] == product_id for p in portfolio.data["_products"]):
            portfolio.data["_products"].append({"ProductId": product_id})
            ctx.backends.resources.save(portfolio, conn=conn)
    return product_id


def ensure_portfolio(ctx: Context, portfolio_id: str, display_name: str, provider: str, description: str) -> Record:
    with ctx.store.write() as conn:
        record = ctx.backends.resources.get(ctx.account_id, ctx.region, PORTFOLIO, name=portfolio_id, conn=conn)
        if record is None:
            record = create_portfolio_record(
                ctx, display_name, provider, description, portfolio_id=portfolio_id, conn=conn
            )
    return record


def remove_portfolio(ctx: Context, portfolio_id: str) -> None:
    """Take SelfMaker's portfolio (and the products only it holds) out of the account."""
    with ctx.store.write() as conn:
        record = ctx.backends.resources.get(
            ctx.account_id, ctx.region, PORTFOLIO, name=portfolio_id, conn=conn, lock=True
        )
        if record is None:
            return
        for entry in record.data["_products"]:
            held = ctx.backends.resources.get(ctx.account_id, ctx.region, PRODUCT, name=entry["ProductId"], conn=conn)
            if held is not None and held.data.get("_builtin"):
                ctx.backends.resources.delete(held.arn, conn=conn)
        ctx.backends.resources.delete(record.arn, conn=conn)
