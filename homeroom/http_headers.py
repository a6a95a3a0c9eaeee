"""Security headers on every answer of every service, as plain ASGI middleware.

* ``Cache-Control: no-store``: answers carry personal data (student records, the audit
  export, parents' reports); no browser, proxy or CDN may keep a copy. Set on every answer
  unless the route set its own.
* ``Content-Security-Policy`` on HTML (consent's public agreements page): nothing but
  same-origin styles and images, no scripts, no framing, forms post to this origin only.
* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` everywhere.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from homeroom.asgi import HttpMiddleware

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
