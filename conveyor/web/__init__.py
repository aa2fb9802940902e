"""The HTTP API, Prometheus metrics and live dashboard: ``create_app(app)`` is an ASGI app.

Needs the ``web`` extra: ``pip install 'conveyor[web]'``; ``conveyor serve module:app`` runs
it on uvicorn.
"""

from __future__ import annotations

from conveyor.errors import MissingDependency

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise MissingDependency(
        f"the web app needs an extra: pip install 'conveyor[web]' ({exc})"
    ) from exc

from conveyor.web.server import create_app
from conveyor.web.state import WebSettings

__all__ = ["WebSettings", "create_app"]
