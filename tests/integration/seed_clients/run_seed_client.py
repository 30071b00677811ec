"""Run an unmodified lab client against a test server on loopback.

The lab's clients connect to ``gethostbyname(gethostname())`` port 5050; this
wrapper redirects that one address to 127.0.0.1 and the test server's port, so
no traffic leaves loopback, then runs the client file as ``__main__``.
Usage: python run_seed_client.py CLIENT_FILE PORT
"""

import runpy
import socket
import sys

client_file, port = sys.argv[1], int(sys.argv[2])
real_connect = socket.socket.connect


def loopback_connect(self: socket.socket, address: object) -> None:
    real_connect(self, ("127.0.0.1", port))


socket.gethostbyname = lambda name: "127.0.0.1"
socket.socket.connect = loopback_connect  # type: ignore[method-assign]
runpy.run_path(client_file, run_name="__main__")
