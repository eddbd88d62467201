"""The console's first page: what ran lately, one List call per family (no describes)."""

from __future__ import annotations

from ..web import Route, View

RECENT = 5


async def home(view: View):
    newest = {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": RECENT}
    pipelines = await view.call("ListPipelines", newest)
    training = await view.call("ListTrainingJobs", newest)
    groups = await view.call("ListModelPackageGroups", newest)
    experiments = await view.call("ListExperiments", newest)
    endpoints = await view.call("ListEndpoints", newest)
    feature_groups = await view.call("ListFeatureGroups", newest)
    return view.render(
        "home.html",
        title="Overview",
        pipelines=pipelines.get("PipelineSummaries", []),
        training=training.get("TrainingJobSummaries", []),
        groups=groups.get("ModelPackageGroupSummaryList", []),
        experiments=experiments.get("ExperimentSummaries", []),
        endpoints=endpoints.get("Endpoints", []),
        feature_groups=feature_groups.get("FeatureGroupSummaries", []),
    )


ROUTES = [Route("GET", "/", home)]
