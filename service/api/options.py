"""OPTIONS on any documented path: 204 with an Allow header of exactly the methods the OpenAPI schema lists.

Starlette answers OPTIONS with a 405 whose Allow names the methods of the first route whose path matches, so
`/studies` claimed POST only while the schema has GET and POST. The answer is read off the schema itself, so
the two cannot disagree.
"""

from __future__ import annotations

import re
from functools import cached_property

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

_PATH_PARAMETER = re.compile(r"\\\{[^/]+?\\\}")  # an escaped "{study_id}" in a re.escape()d template


class SchemaOptions:
    """Answers OPTIONS for the schema's paths (no token needed: it tells only what the schema tells)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = self.allowed(scope["path"]) if scope["type"] == "http" and scope["method"] == "OPTIONS" else None
        if methods is None:
            await self.app(scope, receive, send)
            return
        await Response(status_code=204, headers={"Allow": ", ".join(methods)})(scope, receive, send)

    def allowed(self, path: str) -> list[str] | None:
        """The schema's methods for the template `path` matches, with OPTIONS; None for a path it lacks."""
        for pattern, methods in self._templates:
            if pattern.fullmatch(path):
                return methods
        return None

    @cached_property
    def _templates(self) -> list[tuple[re.Pattern[str], list[str]]]:
        return [(re.compile(_PATH_PARAMETER.sub("[^/]+", re.escape(template))),
                 sorted([method.upper() for method in operations] + ["OPTIONS"]))
                for template, operations in self.api.openapi()["paths"].items()]
