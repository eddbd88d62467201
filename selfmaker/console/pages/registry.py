"""The model registry: package groups, their versions, a version's metrics and its approval.

Approving or rejecting is UpdateModelPackage with the comment as ApprovalDescription, so it is the API's
own change: its validation, the registry's cross-account policy, and the approval event it emits.
"""

from __future__ import annotations

from ...server.errors import validation
from ..listing import Listing
from ..rendering import console_url
from ..web import Route, View, redirect

GROUPS = Listing("ListModelPackageGroups", "ModelPackageGroupSummaryList", status_filter=None)
VERSIONS = Listing(
    "ListModelPackages",
    "ModelPackageSummaryList",
    name_filter=None,
    status_filter="ModelApprovalStatus",
    fixed={"ModelPackageType": "Versioned"},
)
DECISIONS = ("Approved", "Rejected", "PendingManualApproval")


async def list_groups(view: View):
    listing = await GROUPS.fetch(view)
    return view.render("registry/list.html", title="Model registry", listing=listing)


async def group(view: View):
    name = view.labels["group"]
    described = await view.call("DescribeModelPackageGroup", {"ModelPackageGroupName": name})
    versions = await VERSIONS.fetch(view, ModelPackageGroupName=name)
    return view.render("registry/group.html", title=f"Model group {name}", group=described, versions=versions)


async def _package_arn(view: View) -> str:
    version = view.labels["version"]
    if not version.isdigit():
        raise validation(f"{version!r} is not a model package version.")
    described = await view.call("DescribeModelPackageGroup", {"ModelPackageGroupName": view.labels["group"]})
    group_arn = described["ModelPackageGroupArn"]
    return group_arn.replace(":model-package-group/", ":model-package/", 1) + f"/{version}"


async def version(view: View):
    package = await view.call("DescribeModelPackage", {"ModelPackageName": await _package_arn(view)})
    return view.render(
        "registry/version.html",
        title=f"{view.labels['group']} version {view.labels['version']}",
        group_name=view.labels["group"],
        package=package,
        decisions=DECISIONS,
    )


async def decide(view: View):
    decision = view.field("decision")
    if decision not in DECISIONS:
        raise validation(f"The approval status must be one of {', '.join(DECISIONS)}.")
    params = {"ModelPackageArn": await _package_arn(view), "ModelApprovalStatus": decision}
    if comment := view.field("comment").strip():
        params["ApprovalDescription"] = comment
    await view.call("UpdateModelPackage", params)
    view.flash("ok", f"Version {view.labels['version']} is now {decision}.")
    return redirect(console_url(f"/models/{view.labels['group']}/{view.labels['version']}"))


ROUTES = [
    Route("GET", "/models", list_groups),
    Route("GET", "/models/{group}", group),
    Route("GET", "/models/{group}/{version}", version),
    Route("POST", "/models/{group}/{version}/approval", decide),
]
