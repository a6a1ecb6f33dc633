"""The provider stand-in: TLS servers on the AI provider's (documentation) addresses.

Run by the node test bed inside a network namespace of its own (`ip netns exec aidp-provider
python -m aidp.devcluster.provider ...`): one listening socket per address and port, each
completing a TLS handshake with a certificate for the provider's host names and answering any
request with a short HTTP response naming the address. A TCP connection from a pod succeeds
exactly when the network lets it through; that is all the e2e tests ask of it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import ssl
import sys
import threading
from types import FrameType


def _serve(sock: socket.socket, ctx: ssl.SSLContext, address: str, stop: threading.Event) -> None:
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            conn, _peer = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        threading.Thread(target=_answer, args=(conn, ctx, address), daemon=True).start()


def _answer(conn: socket.socket, ctx: ssl.SSLContext, address: str) -> None:
    conn.settimeout(5)
    with contextlib.suppress(OSError, ssl.SSLError), conn, ctx.wrap_socket(conn, server_side=True) as tls:
        tls.recv(4096)
        body = f"aidp provider stand-in on {address}\n".encode()
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--listen", action="append", required=True, help="ADDRESS:PORT (repeatable)")
    args = parser.parse_args(argv)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    stop = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threads = []
    for spec in args.listen:
        host, _, port = spec.rpartition(":")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), int(port)))
        sock.listen(64)
        t = threading.Thread(target=_serve, args=(sock, ctx, host, stop), daemon=True)
        t.start()
        threads.append(t)
    print(f"provider stand-in listening on {', '.join(args.listen)}", flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
