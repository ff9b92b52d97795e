"""A tiny HTTP server on a loopback address, playing a registry, its token realm or what a redirect points at, and
recording what it was sent (the Authorization header above all)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Played:
    """A loopback HTTP server on `host` (all of 127/8 reaches this machine's lo on Linux) answering each request
    with `answer(method, path, headers) -> (status, [(header, value)], body)`; it records (method, path,
    Authorization) of every request it got."""

    def __init__(self, answer, host="127.0.0.1"):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                outer.requests.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, body = answer(self.command, self.path, self.headers)
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            do_HEAD = do_GET = _answer

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.address = self.url.removeprefix("http://")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
