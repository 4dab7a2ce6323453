"""A TCP proxy on 127.0.0.1 that the crash tests put between a process and RabbitMQ.

It forwards bytes both ways, one pair of pump threads per connection, and can be driven from the
test while traffic flows:

* :meth:`TcpProxy.cut` closes every connection (both sockets, so both peers see the link drop) and
  closes the listening socket, so new connections are refused (``ECONNREFUSED``) until
* :meth:`TcpProxy.restore` listens again on the same port;
* :meth:`TcpProxy.stall` stops forwarding while keeping every socket open (a black hole: heartbeats
  are lost, nothing is closed), and :meth:`TcpProxy.resume` flushes what was held back.

The machine's RabbitMQ is never touched: only the connections made through the proxy suffer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

_CHUNK = 65536


@dataclass
class ProxyStats:
    accepted: int = 0
    cuts: int = 0
    stalls: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    cut_log: list[tuple[float, float]] = field(default_factory=list)  # (start, end) monotonic


class _Pair:
    """One proxied connection: the client's socket and ours to the target."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        for src, dst, up in ((self.client, self.upstream, True), (self.upstream, self.client, False)):
            threading.Thread(
                target=self._pump, args=(src, dst, up), name=f'{self.proxy.name}-pump', daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        proxy = self.proxy
        try:
            while not self.closed.is_set():
                try:
                    data = src.recv(_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                # A stall holds the bytes here: the sender's kernel buffers fill, nothing is closed.
                while not proxy._flowing.wait(0.2):
                    if self.closed.is_set():
                        return
                if self.closed.is_set():
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    break
                if up:
                    proxy.stats.bytes_up += len(data)
                else:
                    proxy.stats.bytes_down += len(data)
            # Half-close would let a peer linger; a proxy that lost one side drops both.
        finally:
            if not proxy._flowing.is_set():
                # Stalled: the peer's close must not be seen before the stall ends.
                while not proxy._flowing.wait(0.2) and not self.closed.is_set():
                    pass
            self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self.proxy._forget(self)


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int, name: str = 'proxy') -> None:
        self.target = (target_host, target_port)
        self.name = name
        self.host = '127.0.0.1'
        self.port = 0
        self.stats = ProxyStats()
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self._cut_since: float | None = None
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(50):
            try:
                sock.bind((self.host, self.port))
                break
            except OSError as exc:  # the old port lingers for a moment after a cut
                if exc.errno != errno.EADDRINUSE or attempt == 49:
                    sock.close()
                    raise
                time.sleep(0.05)
        sock.listen(128)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._listener = sock
        thread = threading.Thread(target=self._accept, args=(sock,), name=f'{self.name}-accept', daemon=True)
        self._accept_thread = thread
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            if self._listener is not listener:
                client.close()
                break
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError as exc:
                logger.warning('%s: cannot reach %s: %r', self.name, self.target, exc)
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(self, client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.stats.accepted += 1
            pair.start()
        with contextlib.suppress(OSError):
            listener.close()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)

    @property
    def url_host_port(self) -> str:
        return f'{self.host}:{self.port}'

    @property
    def is_cut(self) -> bool:
        return self._cut_since is not None

    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # -- faults -------------------------------------------------------------------------------
    def cut(self) -> int:
        """Drop every connection and refuse new ones; return how many connections were dropped."""
        if self._cut_since is not None:
            return 0
        self._cut_since = time.monotonic()
        self.stats.cuts += 1
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(2)
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        return len(pairs)

    def restore(self) -> None:
        """Listen again on the same port (after :meth:`cut`)."""
        if self._cut_since is None or self._closed:
            return
        self.stats.cut_log.append((self._cut_since, time.monotonic()))
        self._cut_since = None
        self._listen()

    def stall(self) -> None:
        """Stop forwarding, keep every socket open."""
        if self._flowing.is_set():
            self.stats.stalls += 1
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def heal(self) -> None:
        """Back to normal whatever the state."""
        self.resume()
        self.restore()

    def close(self) -> None:
        self._closed = True
        self.resume()
        self._cut_since = None
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
