"""Notebook instances: their status, and the actions a Studio user expects: Open JupyterLab (a presigned URL
made by CreatePresignedNotebookInstanceUrl for the session's account, to which the browser is sent), Start
and Stop.

The presigned URL is the API's answer, never anything from the request, so the redirect leads only where
SelfMaker's notebook proxy serves the instance.
"""

from __future__ import annotations

from ..listing import Listing
from ..live import status_stream
from ..rendering import console_url
from ..web import Route, View, redirect

NOTEBOOKS = Listing("ListNotebookInstances", "NotebookInstances")
CHANGING = {"Pending", "Stopping", "Updating", "Deleting"}
SESSION_SECONDS = 12 * 3600  # the JupyterLab session the URL opens (AWS's default and maximum)


async def list_notebooks(view: View):
    listing = await NOTEBOOKS.fetch(view)
    return view.render("notebooks/list.html", title="Notebook instances", listing=listing)


async def notebook(view: View):
    name = view.labels["name"]
    described = await view.call("DescribeNotebookInstance", {"NotebookInstanceName": name})
    return view.render(
        "notebooks/detail.html",
        title=f"Notebook instance {name}",
        notebook=described,
        name=name,
        live=described.get("NotebookInstanceStatus") in CHANGING,
    )


async def status_events(view: View):
    """The instance's status while it changes (Pending to InService, Stopping to Stopped)."""
    name = view.labels["name"]
    params = {"NotebookInstanceName": name}
    await view.call("DescribeNotebookInstance", params)  # the caller's, before any stream
    return status_stream(
        view.request, lambda: view.call("DescribeNotebookInstance", params), "NotebookInstanceStatus", CHANGING
    )


async def open_lab(view: View):
    name = view.labels["name"]
    answer = await view.call(
        "CreatePresignedNotebookInstanceUrl",
        {"NotebookInstanceName": name, "SessionExpirationDurationInSeconds": SESSION_SECONDS},
    )
    return redirect(answer["AuthorizedUrl"])


def _action(operation: str, done: str):
    async def act(view: View):
        name = view.labels["name"]
        await view.call(operation, {"NotebookInstanceName": name})
        view.flash("ok", f"{done} {name}.")
        return redirect(console_url(f"/notebooks/{name}"))

    return act


ROUTES = [
    Route("GET", "/notebooks", list_notebooks),
    Route("GET", "/notebooks/{name}", notebook),
    Route("GET", "/notebooks/{name}/events", status_events),
    Route("POST", "/notebooks/{name}/open", open_lab),
    Route("POST", "/notebooks/{name}/start", _action("StartNotebookInstance", "Starting")),
    Route("POST", "/notebooks/{name}/stop", _action("StopNotebookInstance", "Stopping")),
]
