"""A TCP listener a test runs inside a namespace of its own (a node, the Internet stand-in):
it answers every connection with one line and prints each peer's address as it comes, so
the test learns whether anything reached it.

    python tests/support/listener.py HOST PORT [ANSWER]
"""

import socket
import sys


def main(host: str, port: int, answer: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, port), family=family, reuse_port=True) as server:
        print("listening", flush=True)
        while True:
            peer, address = server.accept()
            with peer:
                print(f"from {address[0]}", flush=True)
                peer.sendall(f"{answer}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "hello")
