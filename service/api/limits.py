"""Bounds on what one request can cost: its body's size, the size of the 422 that answers a bad one, and how
many studies and queued trials one token may ask for per minute."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import deque
from typing import Any

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXCERPT_CHARS = 200  # of a bad value or a location step, quoted back in a 422
MESSAGE_CHARS = 1000  # of a message: ours, but it may quote names from the input (at most 100 characters each)
ERRORS_SHOWN = 20  # field errors in one 422; the last entry says how many more there were


class BodySizeLimit:
    """Answers 413 to a request whose body exceeds `max_bytes`, having read at most that much of it.

    A declared Content-Length over the limit is refused before any of the body is read; a chunked body is
    counted as it arrives. The body is buffered (it is at most `max_bytes`) and handed to the app whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = (f"request body over {self.max_bytes} bytes; send less (the server's limit is "
                  "TAILTUNE_API_MAX_REQUEST_BYTES)")
        # Connection: close, because the unread rest of the body would otherwise be taken for the next request.
        response = JSONResponse({"detail": detail}, status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                                headers={"Connection": "close"})
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over the buffered body once, then listens to the client (for a disconnect)."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def bounded_validation_errors(_request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 body with every quoted part cut to an excerpt: the default echoes the whole input back
    (a model-level error's input is the entire body)."""
    errors = error.errors()
    shown = [_bounded(entry) for entry in errors[:ERRORS_SHOWN]]
    if len(errors) > ERRORS_SHOWN:
        shown.append({"loc": ["body"], "msg": f"and {len(errors) - ERRORS_SHOWN} more errors", "type": "more"})
    return JSONResponse({"detail": shown}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _bounded(entry: dict[str, Any]) -> dict[str, Any]:
    bounded = {"loc": [part if isinstance(part, int) else excerpt(str(part)) for part in entry["loc"]],
               "msg": excerpt(str(entry["msg"]), MESSAGE_CHARS), "type": str(entry["type"])}
    if "input" in entry:
        bounded["input"] = excerpt(json.dumps(entry["input"], default=str))
    return bounded


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class WritesBusyError(Exception):
    """A token sent more writes than its per-minute limit; `retry_after_s` says when the next one fits."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(f"this token sent {limit} study creations or queued trials in the last minute; retry in "
                         f"{retry_after_s} s (the server's limit is TAILTUNE_API_WRITES_PER_MINUTE)")
        self.retry_after_s = retry_after_s


class WriteRateLimit:
    """A sliding window of one minute per token, in this process's memory (each API replica counts its own)."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._sent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, credential: str | None) -> None:
        """Counts one write of the token; WritesBusyError when the window is full (the write is not counted)."""
        if self.per_minute == 0:
            return
        # A digest, so this process's memory never holds the tokens it has seen.
        key = hashlib.sha256((credential or "").encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            sent = self._sent.setdefault(key, deque())
            while sent and now - sent[0] >= self.WINDOW_S:
                sent.popleft()
            if len(sent) >= self.per_minute:
                raise WritesBusyError(self.per_minute, max(1, math.ceil(self.WINDOW_S - (now - sent[0]))))
            sent.append(now)
