"""The collector as a JupyterHub service: every request is authenticated by the Hub.

``telemetry-sinks serve --hub-service`` (or ``c.Collector.hub_service = True``) serves
the collector's API under the service's prefix (``$JUPYTERHUB_SERVICE_PREFIX``, e.g.
``/services/telemetry/``) on the address of ``$JUPYTERHUB_SERVICE_URL``, and accepts
a request only from an identity the Hub vouches for (``jupyterhub.services.auth``):

* browsers of logged-in users: the Hub's OAuth cookie of this service (a POST must also
  carry the XSRF token, header ``X-XSRFToken``, which ``GET <prefix>api/session`` returns);
* single-user servers, users and services with a Hub API token
  (``Authorization: token <token>``, e.g. ``$JUPYTERHUB_API_TOKEN``).

A request without Hub authentication gets 401 (403 when the identity lacks
``c.Collector.hub_scopes``).  The Hub sets the environment of a managed service; for an
external service set ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_CLIENT_ID``, ``JUPYTERHUB_SERVICE_PREFIX`` and ``JUPYTERHUB_OAUTH_CALLBACK_URL``.
Needs jupyterhub (the package, in the service's environment).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado import web

from .handlers import (
    ApiError,
    BaseHandler,
    DescribeHandler,
    EventsHandler,
    HealthHandler,
    NotFoundHandler,
    SchemasHandler,
    _log_request,
)

if TYPE_CHECKING:
    from .app import Collector

SERVICE_PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"
SERVICE_URL_ENV = "JUPYTERHUB_SERVICE_URL"


#: Signs the OAuth cookies: one per process tree, so that the processes of
#: ``serve --processes N`` (forked after this module is imported) accept each other's cookies.
COOKIE_SECRET = os.urandom(32)

def _hub_auth_module() -> Any:
    try:
        from jupyterhub.services import auth
    except ImportError as exc:
        from ..errors import MissingExtraError

        raise MissingExtraError(
            "The collector as a JupyterHub service needs jupyterhub: pip install jupyterhub"
        ) from exc
    return auth


def service_prefix() -> str:
    """The URL prefix the Hub's proxy routes to this service (``/`` outside a Hub)."""
    prefix = os.environ.get(SERVICE_PREFIX_ENV, "/") or "/"
    return prefix if prefix.endswith("/") else prefix + "/"


def service_address() -> tuple[str, int] | None:
    """``(ip, port)`` of ``$JUPYTERHUB_SERVICE_URL``, where the Hub expects the service."""
    url = os.environ.get(SERVICE_URL_ENV)
    if not url:
        return None
    parsed = urllib.parse.urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80)


def make_hub_app(collector: Collector) -> tornado.web.Application:
    """The collector's API under the service prefix, each endpoint behind Hub authentication."""
    auth = _hub_auth_module()

    class HubIdentity(auth.HubOAuthenticated):  # type: ignore[name-defined]  # jupyterhub, imported at run time
        """Who the Hub says sent the request (a user's OAuth cookie or any Hub API token)."""

        @property
        def hub_auth(self) -> Any:
            return self.settings["hub_auth"]

        @hub_auth.setter
        def hub_auth(self, value: Any) -> None:  # the mixin assigns it; ours comes from settings
            pass

        @property
        def hub_scopes(self) -> set[str] | None:
            return set(self.settings["collector"].hub_scopes) or None

        _refused: str | None = None
        authenticates_every_request = True

        def is_browser_request(self) -> bool:
            """A user's browser (the OAuth cookie), not a server with a Hub API token: the
            user's consent applies to its events."""
            return "Authorization" not in self.request.headers

        def check_hub_user(self, model: dict[str, Any]) -> dict[str, Any]:
            try:
                return super().check_hub_user(model)
            except auth.UserNotAllowed:
                self._refused = f"{model.get('kind', 'user')} {model.get('name')!r}"
                raise

        def auth_error(self) -> ApiError | None:
            if self.current_user:
                return None
            if self._refused:
                return ApiError(403, f"the Hub {self._refused} lacks the scopes in c.Collector.hub_scopes "
                                f"({', '.join(sorted(self.hub_scopes or ()))})")
            return ApiError(401, "JupyterHub authentication required: log in to the Hub and use this "
                            "service's OAuth cookie (with the X-XSRFToken header from "
                            f"{service_prefix()}api/session on POST), or send 'Authorization: token "
                            "<Hub API token>'", {"WWW-Authenticate": 'token realm="JupyterHub"'})

    class HubEvents(HubIdentity, EventsHandler):
        pass

    class HubSchemas(HubIdentity, SchemasHandler):
        pass

    class HubHealth(HubIdentity, HealthHandler):
        pass

    class SessionHandler(HubIdentity, BaseHandler):
        """``GET <prefix>api/session``: the Hub identity, and the XSRF token for POSTs by cookie.

        A browser that is not logged in to this service is sent through the Hub's login.
        """

        def prepare(self) -> None:
            pass  # @web.authenticated below: a browser is redirected to the Hub's login

        @web.authenticated
        def get(self) -> None:
            user = self.current_user
            self.write_json(200, {"name": user["name"], "kind": user.get("kind", "user"),
                                  "xsrf_token": self.xsrf_token.decode("ascii")})

    class Callback(auth.HubOAuthCallbackHandler):  # type: ignore[name-defined]  # jupyterhub, imported at run time
        @property
        def hub_auth(self) -> Any:
            return self.settings["hub_auth"]

        @hub_auth.setter
        def hub_auth(self, value: Any) -> None:
            pass

    hub_auth = auth.HubOAuth(api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""), cache_max_age=60)
    prefix = service_prefix()
    return tornado.web.Application(
        [
            (prefix, DescribeHandler),
            (prefix + "api/events/?", HubEvents),
            (prefix + "api/schemas/?", HubSchemas),
            (prefix + "api/health/?", HubHealth),
            (prefix + "api/session/?", SessionHandler),
            (prefix + "oauth_callback", Callback),
        ],
        default_handler_class=NotFoundHandler,
        collector=collector,
        hub_auth=hub_auth,
        cookie_secret=COOKIE_SECRET,
        login_url=hub_auth.login_url,
        log_function=_log_request,
    )


__all__ = ["make_hub_app", "service_address", "service_prefix"]
