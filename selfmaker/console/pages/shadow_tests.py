"""Shadow tests (inference experiments): the production and shadow variants side by side on their endpoint,
with each variant's invocation metrics charted together, and the decision that ends a test.

The comparison charts are the endpoint page's (:func:`.endpoints.metric_charts`: one GetMetricData of every
variant's Invocations, ModelLatency and errors), followed live over the endpoint's own metrics stream. Ending
the test is StopInferenceExperiment with the ModelVariantActions the reader chose: promote the shadow (it
replaces production) or keep production (the shadow is removed).
"""

from __future__ import annotations

from ...server.errors import validation
from ..listing import Listing
from ..rendering import console_url
from ..web import Route, View, redirect
from .endpoints import DEFAULT_WINDOW, WINDOWS, metric_charts

EXPERIMENTS = Listing("ListInferenceExperiments", "InferenceExperiments", fixed={"Type": "ShadowMode"})
LIVE = {"Creating", "Created", "Updating", "Running", "Starting", "Stopping"}


async def list_tests(view: View):
    listing = await EXPERIMENTS.fetch(view)
    return view.render("shadow_tests/list.html", title="Shadow tests", listing=listing)


def _roles(described: dict) -> tuple[str | None, list[str]]:
    shadow = described.get("ShadowModeConfig") or {}
    return shadow.get("SourceModelVariantName"), [
        v["ShadowModelVariantName"] for v in shadow.get("ShadowModelVariants", [])
    ]


async def shadow_test(view: View):
    name = view.labels["name"]
    window = view.query("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        raise validation(f"The window is one of {', '.join(WINDOWS)}.")
    described = await view.call("DescribeInferenceExperiment", {"Name": name})
    production, shadows = _roles(described)
    endpoint = (described.get("EndpointMetadata") or {}).get("EndpointName", "")
    variants = [v for v in [production, *shadows] if v]
    charts = await metric_charts(view, endpoint, variants, window) if endpoint and variants else None
    return view.render(
        "shadow_tests/detail.html",
        title=f"Shadow test {name}",
        test=described,
        name=name,
        production=production,
        shadows=shadows,
        endpoint=endpoint,
        charts={"window": window, "period": WINDOWS[window][1], **charts} if charts else None,
        window=window,
        windows=WINDOWS,
        running=described.get("Status") == "Running",
    )


async def stop(view: View):
    name = view.labels["name"]
    decision = view.field("decision")
    described = await view.call("DescribeInferenceExperiment", {"Name": name})
    production, shadows = _roles(described)
    if decision == "promote" and len(shadows) == 1:
        actions = {production: "Remove", shadows[0]: "Promote"}
    elif decision == "keep":
        actions = {production: "Retain", **dict.fromkeys(shadows, "Remove")}
    else:
        raise validation("Choose to promote the shadow variant or to keep production.")
    params = {"Name": name, "ModelVariantActions": actions, "DesiredState": "Completed"}
    if reason := view.field("reason").strip():
        params["Reason"] = reason
    await view.call("StopInferenceExperiment", params)
    view.flash("ok", f"Stopping {name}: {'the shadow is promoted' if decision == 'promote' else 'production stays'}.")
    return redirect(console_url(f"/shadow-tests/{name}"))


ROUTES = [
    Route("GET", "/shadow-tests", list_tests),
    Route("GET", "/shadow-tests/{name}", shadow_test),
    Route("POST", "/shadow-tests/{name}/stop", stop),
]
