"""A signed-URL file host like the ones helpdesks hand out attachments from (Zendesk's
`*.zdusercontent.com`, Freshdesk's S3 links): links expire, and a request that carries an
Authorization header besides the signature is refused, as S3 does."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, jsonify, request

from deskmark.sandbox.server import LoopbackServer

__all__ = ["SignedFileHost"]


class SignedFileHost:
    def __init__(self, find: Callable[[str], tuple[bytes, str] | None], ttl: float = 300) -> None:
        """`find(token)` returns (bytes, content type) of a stored file, or None."""
        self.find = find
        self.ttl = ttl
        self.requests: list[dict[str, Any]] = []
        self.expire_next = 0  # answer this many valid requests as if their link had expired
        self._key = uuid.uuid4().bytes
        self.server = LoopbackServer(self._app())

    @property
    def host(self) -> str:
        """host:port, for DESKMARK_ATTACHMENT_HOSTS."""
        return f"{self.server.host}:{self.server.port}"

    def start(self) -> SignedFileHost:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def _sign(self, token: str, expires: int) -> str:
        return hmac.new(self._key, f"{token}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, token: str, name: str, ttl: float | None = None) -> str:
        expires = int(time.time() + (self.ttl if ttl is None else ttl))
        return (f"{self.server.url}/files/{token}/{quote(name, safe='')}?X-Amz-Expires={expires}"
                f"&X-Amz-Signature={self._sign(token, expires)}")

    def _app(self) -> Flask:
        app = Flask("sandbox-files")

        def error(status: int, code: str, message: str) -> Response:
            response = jsonify({"Error": {"Code": code, "Message": message}})
            response.status_code = status
            return response

        @app.get("/files/<token>/<path:name>")
        def file(token: str, name: str) -> Response:
            self.requests.append({"path": request.path, "time": time.time(),
                                  "authorization": request.headers.get("Authorization")})
            if "Authorization" in request.headers:
                return error(400, "InvalidArgument", "Only one auth mechanism allowed; only the "
                             "X-Amz-Algorithm query parameter, Signature query string parameter "
                             "or the Authorization header should be specified")
            expires = int(request.args.get("X-Amz-Expires", "0"))
            if not hmac.compare_digest(request.args.get("X-Amz-Signature", ""),
                                       self._sign(token, expires)):
                return error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                             "does not match the signature you provided")
            if expires < time.time() or self.expire_next > 0:
                self.expire_next = max(0, self.expire_next - 1)
                return error(403, "AccessDenied", "Request has expired")
            found = self.find(token)
            if found is None:
                return error(404, "NoSuchKey", "The specified key does not exist.")
            return Response(found[0], mimetype=found[1])

        return app
