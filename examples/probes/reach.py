#!/usr/bin/env python3
"""Health probe: is ADDRESS reachable through this host's interface? Exit 0 if it answered.

Opens a TCP connection to ADDRESS:PORT. An accepted connection or a refusal (RST) both prove
that packets flow both ways through the XDP program on the way; only silence (a timeout, or
no ARP answer) means the path is broken. Sends a handful of packets per try, a few tries at most.
"""
import socket
import sys


def reachable(address: str, port: int, *, tries: int = 3, timeout: float = 1.0) -> bool:
    for _attempt in range(tries):
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return True
        except ConnectionRefusedError:
            return True
        except OSError:
            continue
    return False


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} ADDRESS PORT", file=sys.stderr)
        return 2
    address, port = argv[1], int(argv[2])
    if reachable(address, port):
        print(f"{address}:{port} answered")
        return 0
    print(f"{address}:{port} did not answer: packets are not getting through", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
