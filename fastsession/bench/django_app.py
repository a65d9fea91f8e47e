"""A one-view Django project for the bench's request-level rows (``fastsession.bench.contenders.django_request_ops``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import path


def visit(request: Any) -> HttpResponse:
    """Count visits in the session, when the request has one (the "no session" rows have none)."""
    session = getattr(request, "session", None)
    if session is not None:
        session["visits"] = session.get("visits", 0) + 1
    return HttpResponse("ok")


urlpatterns = [path("visit", visit)]
