#!/usr/bin/env python3
# tests/cluster/rawsend.py - raw TCP probes for the cluster suite's bad-input
# test (test_badinput.sh): sends a file's bytes to a node and reports what the
# node did with the connection. Loopback only; every wait is bounded.
#
#   rawsend.py HOST PORT FILE [--wait SECS] [--conns K] [--hold]
#
# Opens K connections (default 1), sends FILE on each (an empty file sends
# nothing: an idle, half-open connection), then waits up to SECS (default 5)
# and prints one line per connection:
#   closed after 0.01s, 37 bytes received, ERROR -4: bad frame magic
#   open after 5.00s, 0 bytes received
# With --hold the connections are only held for SECS (a background load of
# idle connections) and one summary line is printed. Exit status: 0, or 2 when
# a connection cannot be made.
import socket
import struct
import sys
import time


def parse_error(data):
    """Describes an ERROR frame (doc/protocol.md §4.5) at the start of data."""
    if len(data) < 24 or data[:4] != b"kvfs":
        return ""
    mtype = struct.unpack_from("<H", data, 6)[0]
    blen = struct.unpack_from("<I", data, 16)[0]
    if mtype != 0x000F or len(data) < 24 + blen or blen < 5:
        return ", frame type 0x%04x" % mtype
    body = data[24 : 24 + blen]
    code = struct.unpack_from("<i", body, 0)[0]
    n, shift, i = 0, 0, 4
    while i < len(body) and i < 14:
        b = body[i]
        n |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            break
    text = body[i : i + n].decode("utf-8", "replace")
    return ", ERROR %d: %s" % (code, text)


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        sys.stderr.write("usage: rawsend.py HOST PORT FILE [--wait SECS] [--conns K] [--hold]\n")
        return 2
    host, port, path = args[0], int(args[1]), args[2]
    wait, conns, hold = 5.0, 1, False
    rest = args[3:]
    while rest:
        if rest[0] == "--wait":
            wait = float(rest[1])
            rest = rest[2:]
        elif rest[0] == "--conns":
            conns = int(rest[1])
            rest = rest[2:]
        elif rest[0] == "--hold":
            hold = True
            rest = rest[1:]
        else:
            sys.stderr.write("rawsend.py: unknown argument %s\n" % rest[0])
            return 2
    with open(path, "rb") as f:
        payload = f.read()
    socks = []
    for _ in range(conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect((host, port))
            if payload:
                s.sendall(payload)
        except OSError as e:
            # A node may close (and reset) while we still send: that is an answer.
            if not isinstance(e, (BrokenPipeError, ConnectionResetError)):
                sys.stderr.write("rawsend.py: %s:%d: %s\n" % (host, port, e))
                return 2
        socks.append(s)
    start = time.monotonic()
    if hold:
        closed = 0
        for s in socks:
            # Read until the node closes (an ERROR frame may come first) or
            # the hold time is over.
            while True:
                left = wait - (time.monotonic() - start)
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    if s.recv(65536) == b"":
                        closed += 1
                        break
                except socket.timeout:
                    break
                except OSError:
                    closed += 1
                    break
        print("held %d connections for %.2fs, %d closed by the node" % (conns, wait, closed))
        return 0
    for s in socks:
        data = b""
        state = "open"
        while True:
            left = wait - (time.monotonic() - start)
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                state = "closed"
                break
            if not chunk:
                state = "closed"
                break
            data += chunk
        print("%s after %.2fs, %d bytes received%s"
              % (state, time.monotonic() - start, len(data), parse_error(data)))
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
