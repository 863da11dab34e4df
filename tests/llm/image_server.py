r"""A loopback-only HTTP server of test images, some of them hostile:

* ``/ok.png``: a small valid PNG;
* ``/trickle.png``: a valid PNG sent one byte every ``trickle_interval``
  seconds (each read is quick, the whole download is not);
* ``/huge.png``: announces ``huge_bytes`` in ``Content-Length``;
* ``/endless.png``: no ``Content-Length``, bytes until the client stops;
* ``/bomb.png``: a tiny PNG whose header says 12000 x 12000 pixels.
"""
from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def png_bytes(size: int = 8, color: Any = (200, 30, 30)) -> bytes:
    r"""Returns a :obj:`size` x :obj:`size` RGB PNG written with PIL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new('RGB', (size, size), color).save(buffer, format='PNG')
    return buffer.getvalue()


def bomb_png(width: int = 12000, height: int = 12000) -> bytes:
    r"""Returns a few hundred bytes of PNG whose header declares
    :obj:`width` x :obj:`height` grey pixels (the data is cut short): a
    decompression bomb to refuse before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))

    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b'\x00' * (width + 1) * 4)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
            chunk(b'IDAT', data) + chunk(b'IEND', b''))


class ImageServer:
    r"""Runs on ``127.0.0.1`` on a free port in a daemon thread.

    Args:
        trickle_interval (float): Seconds between the bytes of
            ``/trickle.png``.
        huge_bytes (int): The ``Content-Length`` of ``/huge.png``.
    """
    def __init__(self, trickle_interval: float = 0.05,
                 huge_bytes: int = 50 * 2**20) -> None:
        self.trickle_interval = trickle_interval
        self.huge_bytes = huge_bytes
        self.png = png_bytes()
        self.sent = {'endless.png': 0}
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _head(self, length: Any) -> None:
                self.send_response(200)
                self.send_header('Content-Type', 'image/png')
                if length is not None:
                    self.send_header('Content-Length', str(length))
                self.end_headers()

            def do_GET(self) -> None:
                name = self.path.lstrip('/')
                try:
                    if name == 'ok.png':
                        self._head(len(server.png))
                        self.wfile.write(server.png)
                    elif name == 'bomb.png':
                        data = bomb_png()
                        self._head(len(data))
                        self.wfile.write(data)
                    elif name == 'trickle.png':
                        self._head(len(server.png))
                        for byte in server.png:
                            if server._stop.is_set():
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(server.trickle_interval)
                    elif name == 'huge.png':
                        self._head(server.huge_bytes)
                        self.wfile.write(server.png)
                    elif name == 'endless.png':
                        self._head(None)
                        block = b'\x00' * 65536
                        while not server._stop.is_set():
                            self.wfile.write(block)
                            server.sent['endless.png'] += len(block)
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

        self._httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={'poll_interval': 0.02},
                                        daemon=True)

    def url(self, name: str) -> str:
        return f'http://127.0.0.1:{self.port}/{name}'

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *args: Any) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
