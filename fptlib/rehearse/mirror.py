"""A dataset mirror on 127.0.0.1: a plain HTTP server over one directory, each file at the root under its
own name, which is what `fpt data fetch --mirror URL` expects. It listens on loopback only, on a free
port, and shuts itself down after `lifetime` seconds if nobody stops it first."""
from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the fetch logs each download itself
        pass


@contextlib.contextmanager
def serve(directory: Path, lifetime: float = 3600.0):
    """Serve `directory` on http://127.0.0.1:PORT for the duration of the with-block; yields the URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    watchdog = threading.Timer(lifetime, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
