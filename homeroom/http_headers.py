"""Security headers on every answer of every service, as plain ASGI middleware.

* ``Cache-Control: no-store``: answers carry personal data (student records, the audit
  export, parents' reports); no browser, proxy or CDN may keep a copy. Set on every answer
  unless the route set its own.
* ``Content-Security-Policy`` on HTML (consent's public agreements page): nothing but
  same-origin styles and images, no scripts, no framing, forms post to this origin only.
* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` everywhere.
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from homeroom.asgi import HttpMiddleware

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# Added when the route did not set its own, in this order (names lower-case, as ASGI sends them).
_EVERY_ANSWER = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_HTML_ANSWER = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("latin-1"))


def security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers of an answer with the missing security headers appended: one pass over
    what the route set (the names it set, and whether it is HTML)."""
    present = set()
    html = False
    content_type_seen = False
    for name, value in headers:
        present.add(name)
        if name == b"content-type" and not content_type_seen:  # the first one counts, as Headers.get reads it
            content_type_seen = True
            html = value.startswith(b"text/html")
    missing = [header for header in _EVERY_ANSWER if header[0] not in present]
    if html and _HTML_ANSWER[0] not in present:
        missing.append(_HTML_ANSWER)
    return headers + missing if missing else headers


class SecurityHeaders(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = security_headers(list(message.get("headers", ())))
            await send(message)

        await self.app(scope, receive, send_with_headers)
