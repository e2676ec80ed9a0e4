"""What a caller may do with one request: allowed models and providers, and
the system prompt the gateway adds for it."""
from __future__ import annotations

from proxy.errors import NotFound, PermissionDenied
from proxy.policy.keys import Principal

SYSTEM_ROLES = ("system", "developer")


def authorize(principal: Principal, requested_model: str, provider: str, model: str) -> None:
    if principal.models and requested_model not in principal.models and model not in principal.models:
        raise PermissionDenied(f"This key may not use the model `{requested_model}`. Allowed: "
                               f"{', '.join(principal.models)}.", param="model",
                               code="model_not_allowed")
    if principal.providers and provider not in principal.providers:
        raise PermissionDenied(f"This key may not use the provider `{provider}`. Allowed: "
                               f"{', '.join(principal.providers)}.", param="model",
                               code="provider_not_allowed")


def permitted(principal: Principal, requested_model: str, routes: list) -> list:
    """The routes this caller may use (403 when there are none)."""
    allowed = [r for r in routes if _allows(principal, requested_model, r)]
    if not allowed:
        first = routes[0]
        authorize(principal, requested_model, first.provider.name, first.model)
    return allowed


def _allows(principal: Principal, requested_model: str, route) -> bool:
    try:
        authorize(principal, requested_model, route.provider.name, route.model)
    except PermissionDenied:
        return False
    return True


def add_system_prompt(body: dict, prompt: str | None) -> bool:
    """Put `prompt` first when the request has no system message; the client's own wins."""
    if not prompt or any(m.get("role") in SYSTEM_ROLES for m in body["messages"]):
        return False
    body["messages"].insert(0, {"role": "system", "content": prompt})
    return True


def owner(principal: Principal | None) -> str | None:
    """The virtual key whose data alone this caller may see (None: the master key,
    or an open gateway, sees everything)."""
    return principal.key_id if principal is not None else None


def owns(principal: Principal | None, key_id: str | None) -> bool:
    mine = owner(principal)
    return mine is None or mine == key_id


def check_session(connection, session_id: str, principal: Principal) -> None:
    """A virtual key names only its own sessions (or a new id): another's is not
    found, as the session API says, before anything is called or written. Master
    and open callers, which see every session, are never asked (no read)."""
    if principal.key_id is None:
        return
    row = connection.execute("SELECT api_key_id FROM sessions WHERE id = ?",
                             (session_id,)).fetchone()
    if row is not None and not owns(principal, row[0]):
        raise NotFound(f"No session with id '{session_id}'.", param="X-Session-Id")
