"""SageMaker projects: the list, and a project with what its template provisioned.

A project is a Service Catalog provisioned product (DescribeProvisionedProduct, GetProvisionedProductOutputs);
what its stack made carries the ``sagemaker:project-id`` tag, so its pipelines, model groups and endpoints
are one Search each by that tag, as Studio finds them. A project still being created shows its status and
follows it live until it settles.
"""

from __future__ import annotations

from ...server.errors import AWSError
from ..listing import Listing
from ..live import status_stream
from ..web import Route, View

PROJECTS = Listing("ListProjects", "ProjectSummaryList", status_filter=None)
CHANGING = {"Pending", "CreateInProgress", "UpdateInProgress", "DeleteInProgress"}
# (Search resource, its member in each result, the name member): what a project's template makes.
MEMBERS = (
    ("Pipeline", "Pipeline", "PipelineName"),
    ("ModelPackageGroup", "ModelPackageGroup", "ModelPackageGroupName"),
    ("Endpoint", "Endpoint", "EndpointName"),
)
MEMBER_LIMIT = 100


async def list_projects(view: View):
    listing = await PROJECTS.fetch(view)
    return view.render("projects/list.html", title="Projects", listing=listing)


async def _tagged(view: View, resource: str, member: str, project_id: str) -> list[dict]:
    """The account's ``resource``s tagged with the project's id (one Search, up to MEMBER_LIMIT)."""
    expression = {"Filters": [{"Name": "Tags.sagemaker:project-id", "Operator": "Equals", "Value": project_id}]}
    params = {"Resource": resource, "SearchExpression": expression, "MaxResults": MEMBER_LIMIT}
    answer = await view.call("Search", params)
    return [result[member] for result in answer.get("Results", []) if member in result]


async def _provisioned(view: View, product_id: str) -> tuple[dict, list[dict]]:
    """The provisioned product and its outputs; a product already terminated (a deleted project) is empty."""
    try:
        detail = await view.call("DescribeProvisionedProduct", {"Id": product_id}, service="servicecatalog")
        outputs = await view.call(
            "GetProvisionedProductOutputs", {"ProvisionedProductId": product_id}, service="servicecatalog"
        )
    except AWSError as err:
        if err.code != "ResourceNotFoundException":
            raise
        return {}, []
    return detail.get("ProvisionedProductDetail", {}), outputs.get("Outputs", [])


async def project(view: View):
    name = view.labels["name"]
    described = await view.call("DescribeProject", {"ProjectName": name})
    product_id = (described.get("ServiceCatalogProvisionedProductDetails") or {}).get("ProvisionedProductId")
    product, outputs = await _provisioned(view, product_id) if product_id else ({}, [])
    members = {
        resource: await _tagged(view, resource, member, described["ProjectId"]) for resource, member, _ in MEMBERS
    }
    return view.render(
        "projects/detail.html",
        title=f"Project {name}",
        name=name,
        project=described,
        product=product,
        outputs=outputs,
        members=members,
        live=described.get("ProjectStatus") in CHANGING,
    )


async def status_events(view: View):
    """The project's status while its template is provisioned (or updated, or deleted)."""
    params = {"ProjectName": view.labels["name"]}
    await view.call("DescribeProject", params)  # the caller's, before any stream
    return status_stream(view.request, lambda: view.call("DescribeProject", params), "ProjectStatus", CHANGING)


ROUTES = [
    Route("GET", "/projects", list_projects),
    Route("GET", "/projects/{name}", project),
    Route("GET", "/projects/{name}/events", status_events),
]
