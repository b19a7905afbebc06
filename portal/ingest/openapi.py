"""OpenAPI request bodies for the ingest routes.

The ingest handlers read the raw body themselves (each event is decoded on its own, so one
bad event is rejected alone, with its reason), which hides the body from Litestar's schema
generation. The schemas are generated once here, by Litestar itself, from the same
msgspec structs, and the two operations point at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import msgspec
from litestar import Litestar, post
from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, Operation, Reference, RequestBody, Schema
from litestar.params import JSONBody

from portal.ingest.schemas import UsageEvent


class EventBatchBody(msgspec.Struct):
    """`{"events": [...]}`: at most 1000 events and 5 MiB."""

    events: list[UsageEvent]


@lru_cache(maxsize=1)
def ingest_schemas() -> dict[str, Schema]:
    @post("/", sync_to_thread=False)
    def describe(data: JSONBody[EventBatchBody]) -> None:  # never served
        del data

    components = Litestar([describe]).openapi_schema.components
    assert components.schemas is not None
    return {name: schema for name, schema in components.schemas.items() if isinstance(schema, Schema)}


def add_ingest_schemas(document: OpenAPI) -> None:
    """Add the ingest body schemas to an OpenAPI document (generated once, cached)."""
    components = document.components
    components.schemas = {**(components.schemas or {}), **ingest_schemas()}


def _body(component: str) -> RequestBody:
    return RequestBody(
        content={
            "application/json": OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{component}"))
        },
        required=True,
    )


@dataclass
class SingleEventOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body("UsageEvent")


@dataclass
class EventBatchOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _body("EventBatchBody")
