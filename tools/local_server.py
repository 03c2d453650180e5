"""A threaded HTTP server on a background thread: the base of DiffGraph's local servers."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hangs up mid-reply (a crawl that stops reading a download,
    a browser that moves on): that is the client's choice, not a server error."""

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, ConnectionReset...
            return
        super().handle_error(request, client_address)


class LocalServer:
    """Serves ``handler_class()`` on ``host:port`` (port 0: a free one); a context manager."""

    thread_name = "local-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._httpd: ThreadingHTTPServer | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler, bound to this server's state."""
        raise NotImplementedError

    def start(self) -> Self:
        self._httpd = _QuietServer((self.host, self.port), self.handler_class())
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=self.thread_name, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``http://host:port`` of the running server."""
        if self._httpd is None:
            raise RuntimeError(f"the {self.thread_name} is not running: call start()")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
