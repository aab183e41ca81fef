"""`python -m harvest.port HOST PORT`: is the address the catalog is to be served on free?

`make run` asks this before it harvests, so that a harvest of many minutes does not end in
Datasette's `[Errno 98] Address already in use`. Owns only that question: it binds the
address the way the server will (SO_REUSEADDR, as uvicorn does), closes it at once, and
never listens, serves or harvests.
"""

from __future__ import annotations

import errno
import socket
import sys


def port_problem(host: str, port: int) -> str | None:
    """None when HOST:PORT can be bound now; else one line saying why not and what to do."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        return (
            f"cannot serve the catalog on {where}: {host!r} is not an address of this machine ({exc}); "
            "choose one with `make run HOST=127.0.0.1`"
        )
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = (
                (
                    "another server is using that port (an earlier `make run`?): stop it, or choose "
                    "another port with `make run PORT=8002`"
                )
                if exc.errno == errno.EADDRINUSE
                else "choose another address with `make run HOST=127.0.0.1 PORT=8002`"
            )
            return f"cannot serve the catalog on {where}: {reason}; {hint}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdecimal() or not 0 < int(argv[1]) < 65536:
        print(
            f"usage: python -m harvest.port HOST PORT (a port from 1 to 65535), got {' '.join(argv)!r}", file=sys.stderr
        )
        return 2
    problem = port_problem(argv[0], int(argv[1]))
    if problem:
        print(f"make run: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
