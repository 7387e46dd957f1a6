"""Who may call what.

* ``/v1/*``: when ``auth.api_keys`` is set, a client sends one of them as
  ``Authorization: Bearer <key>`` (OpenAI SDKs) or ``x-api-key: <key>`` (Anthropic SDKs).
* ``/fleet/*`` actions (load, unload, pin, unpin): when ``auth.admin_token`` is set, only
  that token opens them.
* ``/fleet`` reads (snapshot, events): open when neither is configured; otherwise the
  admin token or any client key opens them, so a dashboard can watch the fleet with a
  client key but not change it.
* ``/health`` is always open.

Tokens are compared in constant time. A 401 is answered in the route's dialect.
"""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from cortex.common.config import AuthSection
from cortex.common.errors import CortexError


def presented(connection: ASGIConnection) -> str | None:
    headers = connection.headers
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _matches(token: str | None, accepted: list[str]) -> bool:
    if token is None:
        return False
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found


def _auth(connection: ASGIConnection) -> AuthSection:
    return connection.app.state.gateway.settings.config.auth


def require_client(connection: ASGIConnection) -> None:
    """Raise 401 unless the request carries a client key (when keys are configured).

    Called at the top of each /v1 handler rather than as a Litestar guard: guards cost a
    handler copy per request, and this runs on the hot path.
    """
    auth = _auth(connection)
    if not auth.api_keys:
        return
    token = presented(connection)
    if _matches(token, auth.api_keys):
        return
    if token is None:
        raise CortexError(
            401,
            "This gateway needs an API key: send it as `Authorization: Bearer <key>` or "
            "`x-api-key: <key>`.",
            code="missing_api_key",
        )
    raise CortexError(401, "The API key is not valid for this gateway.", code="invalid_api_key")


async def admin_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    auth = _auth(connection)
    if not auth.admin_token:
        return
    if _matches(presented(connection), [auth.admin_token]):
        return
    raise CortexError(
        401,
        "Fleet actions need the admin token (auth.admin_token): send it as "
        "`Authorization: Bearer <token>`.",
        code="admin_token_required",
    )


async def reader_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    auth = _auth(connection)
    accepted = [*auth.api_keys, *([auth.admin_token] if auth.admin_token else [])]
    if not accepted or _matches(presented(connection), accepted):
        return
    raise CortexError(
        401,
        "Reading the fleet needs the admin token or a client API key: send it as "
        "`Authorization: Bearer <token>`.",
        code="token_required",
    )
