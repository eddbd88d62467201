"""Notebook instances: their status, and the actions a Studio user expects: Open JupyterLab (a presigned URL
made by CreatePresignedNotebookInstanceUrl for the session's account, to which the browser is sent), Start
and Stop.

The presigned URL is the API's answer, never anything from the request, so the redirect leads only where
SelfMaker's notebook proxy serves the instance.
"""

from __future__ import annotations

from ..listing import Listing
from ..rendering import console_url
from ..web import Route, View, redirect

NOTEBOOKS = Listing("ListNotebookInstances", "NotebookInstances")
SESSION_SECONDS = 12 * 3600  # the JupyterLab session the URL opens (AWS's default and maximum)


async def list_notebooks(view: View):
    listing = await NOTEBOOKS.fetch(view)
    return view.render("notebooks/list.html", title="Notebook instances", listing=listing)


async def notebook(view: View):
    name = view.labels["name"]
    described = await view.call("DescribeNotebookInstance", {"NotebookInstanceName": name})
    return view.render("notebooks/detail.html", title=f"Notebook instance {name}", notebook=described, name=name)


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
    Route("POST", "/notebooks/{name}/open", open_lab),
    Route("POST", "/notebooks/{name}/start", _action("StartNotebookInstance", "Starting")),
    Route("POST", "/notebooks/{name}/stop", _action("StopNotebookInstance", "Stopping")),
]
