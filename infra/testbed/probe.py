"""Small TCP probes that the testbed runs inside a node's namespace (standard library only).

probe.py connect HOST PORT TIMEOUT   exit 0: connected; 1: refused; 2: timed out
probe.py serve HOST                  print the port, take one connection, read it to the
                                     end, answer with the byte count
probe.py send HOST PORT SIZE         send SIZE bytes, wait for the answer, print
                                     {"bytes": ..., "seconds": ...}
"""

import json
import socket
import sys
import time

CONNECTED, REFUSED, TIMED_OUT = 0, 1, 2
CHUNK = 16 * 1024


def connect(host: str, port: int, timeout: float) -> int:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return CONNECTED
    except TimeoutError:
        return TIMED_OUT
    except OSError:
        return REFUSED


def serve(host: str) -> int:
    with socket.create_server((host, 0), family=socket.AF_INET6) as server:
        server.settimeout(60)
        print(server.getsockname()[1], flush=True)
        peer, _ = server.accept()
        with peer:
            peer.settimeout(600)
            received = 0
            while chunk := peer.recv(CHUNK):
                received += len(chunk)
            peer.sendall(str(received).encode())
    return 0


def send(host: str, port: int, size: int) -> int:
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=600) as sock:
        sock.sendall(b"\0" * size)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(64)
    seconds = time.monotonic() - started
    print(json.dumps({"bytes": int(answer or 0), "seconds": seconds}))
    return 0 if int(answer or 0) == size else 1


def main(argv: list[str]) -> int:
    match argv:
        case ["connect", host, port, timeout]:
            return connect(host, int(port), float(timeout))
        case ["serve", host]:
            return serve(host)
        case ["send", host, port, size]:
            return send(host, int(port), int(size))
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
