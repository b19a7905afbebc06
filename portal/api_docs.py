"""The API docs at /schema: Swagger UI from static/vendor/ (no CDN), under the portal's CSP.

Litestar's own render plugins load their scripts from CDNs and start them with inline
scripts, which a closed network cannot fetch and the portal's Content-Security-Policy
(`script-src 'self'`, `style-src 'self'`) refuses. This page references only files under
/static (`static/VENDORED.md` records their version and checksums) and starts Swagger UI
from `static/api-docs.js`. Redoc was tried first and does not render under this CSP (its
styled-components inject <style> elements); see docs/decisions.md.

Served: `/schema` and `/schema/swagger` (the page), `/schema/openapi.json` and
`/schema/openapi.yaml` (the document). Every answer under /schema carries the portal
pages' security headers.

The document is finished (the ingest bodies, every route's error answers) by the first
request under /schema, just before Litestar serializes it, rather than in `create_app`:
building it costs about 0.3 s, paid by every web process at start and by every test's app.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from litestar import Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.router import Router

from portal.pages.web import SECURITY_HEADERS

SWAGGER_UI_VERSION = "5.36.0"
SWAGGER_UI_DIR = f"/static/vendor/swagger-ui-{SWAGGER_UI_VERSION}"
# Every browser asset the page loads, all served from static/.
ASSETS = (f"{SWAGGER_UI_DIR}/swagger-ui.css", f"{SWAGGER_UI_DIR}/swagger-ui-bundle.js", "/static/api-docs.js")
DOCS_PATH = "/schema"


class OfflineSwaggerPlugin(OpenAPIRenderPlugin):
    """Swagger UI from the vendored files, started by a script file (no inline code)."""

    def __init__(self, *, path: Sequence[str] = ("/", "/swagger"), **kwargs: Any) -> None:
        super().__init__(path=list(path), favicon="", style="", **kwargs)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(f"{openapi_schema['info']['title']} API")
        css, bundle, start = ASSETS
        schema_url = escape(self.get_openapi_json_route(request))
        return (
            '<!doctype html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n'
            '  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'  <title>{title}</title>\n  <link rel="icon" href="data:,">\n'
            f'  <link rel="stylesheet" href="{css}">\n</head>\n<body>\n'
            f'  <div id="swagger-ui" data-schema-url="{schema_url}"></div>\n'
            f'  <script src="{bundle}"></script>\n  <script src="{start}"></script>\n'
            "</body>\n</html>\n"
        ).encode()


_FINISHED = "openapi_document_finished"


async def finish_the_document(request: Request[Any, Any, Any]) -> None:
    """Before the first answer under /schema: build the app's document (Litestar keeps it)
    and finish it in place, once per app."""
    app = request.app
    if app.state.get(_FINISHED):
        return
    from portal.http.openapi_answers import document_answers
    from portal.ingest.openapi import add_ingest_schemas

    document = app.openapi_schema
    add_ingest_schemas(document)
    document_answers(app, document)
    app.state[_FINISHED] = True


def api_docs_config(*, title: str, version: str) -> OpenAPIConfig:
    """The OpenAPI config of the app: the document, and the offline page that shows it."""
    return OpenAPIConfig(
        title=title,
        version=version,
        render_plugins=[OfflineSwaggerPlugin(), YamlRenderPlugin()],
        openapi_router=Router(
            DOCS_PATH,
            route_handlers=[],
            include_in_schema=False,
            response_headers=SECURITY_HEADERS,
            before_request=finish_the_document,
        ),
    )
