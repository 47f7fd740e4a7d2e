"""A loopback HTTP server that speaks one cloud's documented metadata and secret-store protocol.

Each test registers routes: (method, path with query) -> handler(request) ->
(status, body). Requests are recorded so tests can assert headers (IMDSv2
tokens, Metadata headers, bearer tokens, SigV4 signatures).
"""
from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Request], tuple[int, bytes]]


class MetadataServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[Request] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                server.requests.append(request)
                handler = server.routes.get((self.command, self.path))
                status, body = handler(request) if handler else (404, b"not found")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _serve

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def route(self, method: str, path: str, handler: Handler | bytes | str) -> None:
        if not callable(handler):
            body = handler.encode() if isinstance(handler, str) else handler
            self.routes[(method, path)] = lambda _request: (200, body)
        else:
            self.routes[(method, path)] = handler

    @contextmanager
    def running(self) -> Iterator[MetadataServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()


AWS_TOKEN = "imds-session-token"
AWS_CREDS = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIATESTKEY", "SecretAccessKey": "secret", "Token": "session-token", "Expiration": "2099-01-01T00:00:00Z"}


def aws_server(document: bytes, parameters: dict[str, str]) -> MetadataServer:
    """AWS IMDSv2 (token PUT, then token-bearing GETs, 401 without), SSM GetParameters (JSON 1.1), EC2 ModifyInstanceAttribute (query)."""
    server = MetadataServer()

    def token(request: Request) -> tuple[int, bytes]:
        # IMDSv2: the PUT must say how long the token lives.
        return (200, AWS_TOKEN.encode()) if request.headers.get("x-aws-ec2-metadata-token-ttl-seconds") else (400, b"")

    def imds(body: bytes):  # type: ignore[no-untyped-def]
        return lambda request: (200, body) if request.headers.get("x-aws-ec2-metadata-token") == AWS_TOKEN else (401, b"")

    def api(request: Request) -> tuple[int, bytes]:
        if "x-amz-target" not in request.headers:  # EC2's query protocol: a form body, an XML answer
            form = urllib.parse.parse_qs(request.body.decode())
            assert form["Action"] == ["ModifyInstanceAttribute"]
            return 200, b'<ModifyInstanceAttributeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId><return>true</return></ModifyInstanceAttributeResponse>'
        assert request.headers["x-amz-target"] == "AmazonSSM.GetParameters"
        asked = json.loads(request.body)
        assert asked["WithDecryption"] is True
        found = [{"Name": n, "Type": "SecureString", "Value": parameters[n], "Version": 1} for n in asked["Names"] if n in parameters]
        invalid = [n for n in asked["Names"] if n not in parameters]
        return 200, json.dumps({"Parameters": found, "InvalidParameters": invalid}).encode()

    server.route("PUT", "/latest/api/token", token)
    server.route("GET", "/latest/user-data", imds(document))
    server.route("GET", "/latest/meta-data/placement/region", imds(b"eu-west-1"))
    server.route("GET", "/latest/meta-data/iam/security-credentials/", imds(b"transit-node-role"))
    server.route("GET", "/latest/meta-data/iam/security-credentials/transit-node-role", imds(json.dumps(AWS_CREDS).encode()))
    server.route("GET", "/latest/meta-data/instance-id", imds(b"i-0123456789abcdef0"))
    server.route("POST", "/", api)
    return server
