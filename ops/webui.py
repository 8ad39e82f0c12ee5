"""Serve the web page (webui/index.html) and forward its uploads to TorchServe, adding the key here.

    python -m ops.webui            # http://127.0.0.1:8090 (with `make serve` running)

The page posts each file to ``/api/explain`` on this same origin; this server forwards the bytes to
``/explanations/<model>`` with the inference key read from TorchServe's key file. The key never
reaches the browser, and TorchServe needs no CORS opening. Binds 127.0.0.1 by default; bodies over
the server's request limit are refused here with the same JSON error the handler would give.
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from detector.paths import REPO
from ops.client import DetectorClient

PAGE = REPO / "webui" / "index.html"
MAX_BODY_BYTES = 24 * 2**20   # config.properties max_request_size


def make_handler(client: DetectorClient) -> type[BaseHTTPRequestHandler]:
    page = PAGE.read_bytes()

    class WebUIHandler(BaseHTTPRequestHandler):
        server_version = "ai-detector-webui"

        def send_body(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy",
                             "default-src 'self'; img-src 'self' blob: data:; style-src 'unsafe-inline'; "
                             "script-src 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def send_error_json(self, status: int, kind: str, message: str) -> None:
            self.send_body(status, json.dumps({"code": status, "type": kind, "message": message}).encode(),
                           "application/json")

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path in ("/", "/index.html"):
                self.send_body(HTTPStatus.OK, page, "text/html; charset=utf-8")
            else:
                self.send_error_json(HTTPStatus.NOT_FOUND, "NotFound", f"no page at {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            if self.path not in ("/api/explain", "/api/predict"):
                self.send_error_json(HTTPStatus.NOT_FOUND, "NotFound", f"no endpoint at {self.path}")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.send_error_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "TooLarge",
                                     f"body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit")
                return
            data = self.rfile.read(length)
            endpoint = "explanations" if self.path == "/api/explain" else "predictions"
            try:
                answer = client.predict_response(data, endpoint=endpoint)
            except (requests.RequestException, FileNotFoundError) as exc:
                self.send_error_json(HTTPStatus.BAD_GATEWAY, "Unavailable", f"the model server did not answer: {exc}")
                return
            self.send_body(answer.status_code, answer.content, answer.headers.get("Content-Type", "application/json"))

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"[webui] {self.address_string()} {format % args}\n")

    return WebUIHandler


def serve(client: DetectorClient, host: str = "127.0.0.1", port: int = 8090) -> ThreadingHTTPServer:
    """A started-but-not-running server (call ``serve_forever``); port 0 picks a free one."""
    return ThreadingHTTPServer((host, port), make_handler(client))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--inference-url", default="http://127.0.0.1:8080")
    parser.add_argument("--key-file", type=Path, default=None)
    parser.add_argument("--model", default="ai_detector")
    args = parser.parse_args(argv)
    server = serve(DetectorClient(args.inference_url, key_file=args.key_file, model=args.model), args.host, args.port)
    print(f"[webui] open http://{args.host}:{server.server_port}/ (forwarding to {args.inference_url}); Ctrl-C stops it",
          file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
