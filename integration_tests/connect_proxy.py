"""A forwarding HTTPS proxy (HTTP CONNECT) on loopback, and the emulator served over TLS behind it.

Deployments run the connector behind an HTTPS proxy (`HTTPS_PROXY`, `NO_PROXY`) with their own CA
bundle (`REQUESTS_CA_BUNDLE`). `ConnectProxy` is a real one, threads and sockets, bound to
127.0.0.1 port 0: it answers CONNECT, then copies bytes both ways, and records what passed (every
CONNECT's target, every byte in either direction, the local port of each upstream connection).
`mode` makes it misbehave: "silent" reads the CONNECT and never answers; "trickle" answers it one
byte every half second, never finishing. Everything is bounded: a connection lives at most
`max_seconds`, and the proxy closes all on exit.

`tls_emulator(emu, tmp)` serves a started Emulator over TLS with a self-signed certificate made
here (for 127.0.0.1 and localhost; `cryptography`, a CDK dependency) and records the peer port of
every connection the emulator accepts, so a test can tell that every connection came through the
proxy. `ProxiedTlsEmulator` bundles both with the environment a connector process needs.
"""

import datetime
import ipaddress
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROXY_ENV_NAMES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
                   "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def self_signed_certificate(directory: Path) -> Tuple[Path, Path]:
    """A certificate (also its own CA) for 127.0.0.1 and localhost, and its key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "commsmining-emulator test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def tls_emulator(emu, directory: Path) -> Tuple[str, Path, List[int]]:
    """Serves the started `emu` over TLS from now on: (its https URL, the CA file to trust, the peer port of
    every connection it accepts). The handshake runs in the handler's thread, not in the accept loop."""
    cert, key = self_signed_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = emu._server  # the emulator's socketserver: its listening socket is wrapped, nothing else changes
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    peers: List[int] = []
    accept = server.get_request

    def get_request():
        connection, address = accept()
        peers.append(address[1])
        return connection, address

    server.get_request = get_request
    return f"https://127.0.0.1:{emu.port}", cert, peers


class ConnectProxy:
    def __init__(self, mode: str = "forward", max_seconds: float = 120.0):
        assert mode in ("forward", "silent", "trickle")
        self.mode = mode
        self.max_seconds = max_seconds
        self.connects: List[str] = []  # the target of every CONNECT, in order
        self.upstream_ports: List[int] = []  # the local port of each connection the proxy opened upstream
        self.client_bytes = bytearray()  # everything the connector sent to the proxy
        self.server_bytes = bytearray()  # everything the proxy passed back
        self.refused: List[bytes] = []  # request lines of anything other than CONNECT
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sockets: List[socket.socket] = []
        self._listener: Optional[socket.socket] = None

    @property
    def url(self) -> str:
        assert self._listener is not None
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"  # ignore-https-check

    def __enter__(self) -> "ConnectProxy":
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, name="connect-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets + [self._listener]:
            try:
                sock.close()
            except OSError:
                pass

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(self._track(client),), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        started = time.monotonic()
        client.settimeout(self.max_seconds)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            with self._lock:
                self.client_bytes += head
            request_line = head.split(b"\r\n", 1)[0]
            method, target = (request_line.split(b" ") + [b"", b""])[:2]
            if method != b"CONNECT":
                self.refused.append(request_line)
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            with self._lock:
                self.connects.append(target.decode("latin-1"))
            if self.mode == "silent":
                self._closing.wait(self.max_seconds)
                return
            if self.mode == "trickle":
                for byte in b"HTTP/1.1 200 Connection established\r\n":
                    if self._closing.wait(0.5) or time.monotonic() - started > self.max_seconds:
                        return
                    client.sendall(bytes([byte]))
                self._closing.wait(self.max_seconds)
                return
            host, _, port = target.decode("latin-1").rpartition(":")
            upstream = self._track(socket.create_connection((host.strip("[]"), int(port)), timeout=10))
            with self._lock:
                self.upstream_ports.append(upstream.getsockname()[1])
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            back = threading.Thread(target=self._pipe, args=(upstream, client, self.server_bytes), daemon=True)
            back.start()
            self._pipe(client, upstream, self.client_bytes)
            back.join(self.max_seconds)
        except OSError:
            return
        finally:
            try:
                client.close()
            except OSError:
                pass

    def _pipe(self, source: socket.socket, target: socket.socket, record: bytearray) -> None:
        source.settimeout(self.max_seconds)
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                with self._lock:
                    record += chunk
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def saw(self, secret: str) -> bool:
        """Whether `secret` passed the proxy in clear, either way (as UTF-8 or Latin-1)."""
        with self._lock:
            seen = bytes(self.client_bytes) + bytes(self.server_bytes)
        return any(secret.encode(codec, "ignore") in seen for codec in ("utf-8", "latin-1"))


@dataclass
class ProxiedTlsEmulator:
    """The emulator over TLS (`url`, trusted through `ca_file`) behind `proxy`; `env` for a connector process."""

    emu: object
    proxy: ConnectProxy
    url: str
    ca_file: Path
    emulator_peers: List[int]
    env: Dict[str, str] = field(default_factory=dict)

    def through_proxy_only(self) -> bool:
        """Whether every connection the emulator accepted came from the proxy."""
        return bool(self.emulator_peers) and set(self.emulator_peers) <= set(self.proxy.upstream_ports)


def proxied_tls_emulator(emu, proxy: ConnectProxy, directory: Path, base_env: Optional[Dict[str, str]] = None) -> ProxiedTlsEmulator:
    """`emu` (started) over TLS behind `proxy` (entered), with the environment that routes a connector through both."""
    url, ca_file, peers = tls_emulator(emu, directory)
    env = {k: v for k, v in (base_env if base_env is not None else os.environ).items() if k not in PROXY_ENV_NAMES}
    env.update({"HTTPS_PROXY": proxy.url, "REQUESTS_CA_BUNDLE": str(ca_file)})
    return ProxiedTlsEmulator(emu=emu, proxy=proxy, url=url, ca_file=ca_file, emulator_peers=peers, env=env)
