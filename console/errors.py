"""Console errors as pages with the site's layout (console/templates/error.html).

controlplane/app.py hands ``page`` to the API's error translation (install() in
api/problems.py), which decides the status (a domain error's through controlplane/web.py)
and calls this for every path outside the API.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from console.render import render, templates

WHAT_NEXT = {
    403: "Your role does not allow this, or the form was stale: reload the page and try again.",
    404: "Nothing is here: the link may be old, or the thing was removed.",
    422: "The request was refused as it stands: fix what the message says and send it again.",
    500: "The server failed while answering. Nothing was saved by this request; try again later.",
}


def page(request: Request, status: int, title: str, detail: str) -> Response:
    """The error page (just its block for htmx). A 500 does not look up who is signed in:
    the store may be what failed."""
    context = {"status": status, "title": title, "detail": detail, "next": WHAT_NEXT.get(status)}
    if status >= 500:
        context |= {"role": None, "user": None, "csrf": ""}
        return templates.TemplateResponse(request, "error.html", context, status_code=status)
    return render(request, "error.html", context, block="error", status=status)
