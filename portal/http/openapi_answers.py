"""The error answers of the API in its OpenAPI document, so that the schema tells the truth.

Some answers come from no route's own code but from what every route of a kind goes through:
the app-wide guards (`request_checks.fitting_address`: 400, 404; `auth.api_key_guard`: 401,
403, 503), body decoding and size (400, 413) and parameter validation (422). `document_answers`
adds those to every operation after Litestar has generated the document, from what each
route handler declares (its key scope, its path parameters, a body, query parameters). It
also writes the address rules into the parameters themselves: ids are 64-bit integers, and
no path or query text holds a control character.

What only one route answers (409 for an id taken, 200 for a repeated create) the route
declares itself: `responses=error_answers(409)`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
from litestar import Litestar, get
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.routes import HTTPRoute

from portal.http.request_checks import ID_MAX, ID_MIN

# ECMA-262 and Python read this the same way: no control character anywhere in the text.
NO_CONTROL_CHARACTERS = "^[^\\x00-\\x1f\\x7f]*$"

MEANINGS = {
    400: "Malformed request: a control character in the path or query, or a body that is not "
    "the JSON this route reads.",
    401: "No API key, or an unknown or revoked one (`Authorization: Bearer <key>`).",
    403: "The key's scope does not allow this route: it needs an admin key.",
    404: "Nothing has this id (an id beyond 64 bits never exists).",
    409: "The request contradicts what exists already; `detail` says what.",
    413: "The body is larger than this route accepts.",
    422: "A field or parameter has a value that does not fit; `extra` names it as sent.",
    429: "More of these than allowed in a while; nothing was done. `detail` says the allowance.",
    503: "A store is unreachable; nothing was changed. Retry after `Retry-After` seconds.",
}


class ErrorBody(msgspec.Struct):
    """Every error answer of the API: the status again, what is wrong, and for 422 the
    fields at fault (`[{"key": ..., "message": ...}]`)."""

    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None


def error_answers(*codes: int) -> dict[int, ResponseSpec]:
    """`responses=` for the error answers only this route gives, in the API's error shape."""
    return {
        code: ResponseSpec(data_container=ErrorBody, description=MEANINGS[code], generate_examples=False)
        for code in codes
    }


@lru_cache(maxsize=1)
def _error_schema() -> Schema:
    @get("/", sync_to_thread=False, responses=error_answers(400))
    def describe() -> None:  # never served: only its document is read
        return None

    components = Litestar([describe]).openapi_schema.components.schemas or {}
    schema = components[ErrorBody.__name__]
    assert isinstance(schema, Schema)
    return schema


def document_answers(app: Litestar, document: OpenAPI) -> None:
    """Add the error answers each route of `app` can give to its OpenAPI `document` (see above)."""
    components = document.components
    components.schemas = {**(components.schemas or {}), ErrorBody.__name__: _error_schema()}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path_item = (document.paths or {}).get(route.path_format)
        if path_item is None:
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = getattr(path_item, method.lower(), None)
                if isinstance(operation, Operation):
                    _document(operation, handler, has_path_ids=bool(route.path_parameters))


def _document(operation: Operation, handler: Any, *, has_path_ids: bool) -> None:
    parameters = [p for p in operation.parameters or [] if isinstance(p, Parameter)]
    for parameter in parameters:
        _constrain(parameter)
    scope = handler.opt.get("scope")
    decoded_body = "data" in handler.parsed_fn_signature.parameters
    codes = {400}
    if scope is not None:
        codes |= {401, 503} | ({403} if scope == "admin" else set())
    if has_path_ids:
        codes.add(404)
    if operation.request_body is not None:
        codes.add(413)
    if decoded_body or any(p.param_in == "query" for p in parameters):
        codes.add(422)
    # Routes with their own error shape (the compatible endpoints) are documented by code only.
    own_shape = HTTPException in (handler.exception_handlers or {})
    responses = operation.responses if operation.responses is not None else {}
    for code in sorted(codes):
        # Litestar's own 400 (its validation error) is replaced, unless the route wrote its own.
        if str(code) not in responses or (code == 400 and not own_shape):
            content = (
                None
                if own_shape
                else {
                    "application/json": OpenAPIMediaType(
                        schema=Reference(ref=f"#/components/schemas/{ErrorBody.__name__}")
                    )
                }
            )
            responses[str(code)] = OpenAPIResponse(description=MEANINGS[code], content=content)
    operation.responses = responses


def _constrain(parameter: Parameter) -> None:
    """The address rules of `request_checks`, written into a path or query parameter."""
    schema = parameter.schema
    if not isinstance(schema, Schema) or parameter.param_in not in ("path", "query"):
        return
    for one in [schema, *(s for s in schema.one_of or [] if isinstance(s, Schema))]:
        if one.type == OpenAPIType.STRING and not (one.pattern or one.enum or one.format or one.const):
            one.pattern = NO_CONTROL_CHARACTERS
        if one.type == OpenAPIType.INTEGER and parameter.param_in == "path":
            one.format = one.format or "int64"  # type: ignore[assignment]
            one.minimum = ID_MIN if one.minimum is None else one.minimum
            one.maximum = ID_MAX if one.maximum is None else one.maximum
