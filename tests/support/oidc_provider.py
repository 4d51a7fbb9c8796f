"""A small, real OpenID Connect provider for the tests: a FastAPI app served by uvicorn on a
free port, with discovery, an authorization endpoint that signs in `provider.user` at once (no
login form), a token endpoint that checks the client's credentials and the code (single use,
same redirect URI), and a JWKS of its RSA key. ID tokens are signed with joserfc.

    with OidcProvider(client_id="itilflow", client_secret="s") as provider:
        provider.user = "chen"
        ...  # ITILFLOW_OIDC_ISSUER=provider.issuer

`provider.tamper` makes the next ID tokens wrong in one way (for the refusal tests).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlencode

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.support.smtp import free_port


@dataclass
class OidcProvider:
    client_id: str
    client_secret: str
    user: str = "chen"
    username_claim: str = "preferred_username"
    # "", "nonce", "audience", "issuer", "expired", "foreign-key", "no-claim"
    tamper: str = ""
    port: int = field(default_factory=free_port)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: int = 0

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-1"})
        self.foreign_key = RSAKey.generate_key(2048, parameters={"kid": "test-1"})
        self._server = uvicorn.Server(
            uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                url = f"{self.issuer}/.well-known/openid-configuration"
                if httpx.get(url, trust_env=False).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("the test OIDC provider did not start")

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"sub-{self.user}",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            self.username_claim: self.user,
        }
        if self.tamper == "nonce":
            claims["nonce"] = "another-nonce"
        elif self.tamper == "audience":
            claims["aud"] = "another-client"
        elif self.tamper == "issuer":
            claims["iss"] = "http://evil.example.net"
        elif self.tamper == "expired":
            claims["iat"], claims["exp"] = now - 900, now - 600
        elif self.tamper == "no-claim":
            del claims[self.username_claim]
        key = self.foreign_key if self.tamper == "foreign-key" else self.key
        return jwt.encode({"alg": "RS256", "kid": "test-1"}, claims, key)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return dict(KeySet([self.key]).as_dict(private=False))

        @app.get("/authorize")
        def authorize(request: Request) -> RedirectResponse:
            params = request.query_params
            assert params["client_id"] == self.client_id and params["response_type"] == "code"
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"nonce": params["nonce"], "redirect_uri": params["redirect_uri"]}
            query = urlencode({"code": code, "state": params["state"]})
            return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            grant_type, code = form.get("grant_type", ""), form.get("code", "")
            redirect_uri = form.get("redirect_uri", "")
            self.token_requests += 1
            expected = httpx.BasicAuth(self.client_id, self.client_secret)
            sent = request.headers.get("authorization", "")
            if sent != next(expected.auth_flow(httpx.Request("POST", "/"))).headers.get(
                "authorization"
            ):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            issued = self.codes.pop(code, None)  # a code is used once
            if grant_type != "authorization_code" or issued is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            if issued["redirect_uri"] != redirect_uri:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "id_token": self.id_token(issued["nonce"]),
                }
            )

        return app
