#!/usr/bin/env python3
"""Replication lag probe: publishes timestamps on one node and times their arrival on another.

PUBLISH travels in the same effect stream as every write, so the time from PUBLISH on the
source region to delivery on the target region is the replication lag of the stream at that
moment. Usage: lag_probe.py SRC_PORT DST_PORT SECONDS INTERVAL_MS -> prints p50 p99 max count
(milliseconds). Loopback only.
"""
import socket
import sys
import threading
import time


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def main():
    src, dst, seconds, interval_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    sub = socket.create_connection(("127.0.0.1", dst))
    sub.sendall(resp("SUBSCRIBE", "aadb-lag-probe"))
    buf = b""
    while buf.count(b"\r\n") < 6:
        buf += sub.recv(4096)
    lags = []
    done = threading.Event()

    def reader():
        data = b""
        sub.settimeout(0.5)
        while not done.is_set():
            try:
                chunk = sub.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            data += chunk
            now = time.time()
            while True:
                start = data.find(b"*3\r\n$7\r\nmessage\r\n")
                if start < 0:
                    break
                parts = data[start:].split(b"\r\n")
                if len(parts) < 7:
                    break
                payload = parts[6]
                consumed = len(b"\r\n".join(parts[:7])) + 2
                data = data[start + consumed:]
                try:
                    lags.append((now - float(payload)) * 1000.0)
                except ValueError:
                    pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    pub = socket.create_connection(("127.0.0.1", src))
    end = time.time() + seconds
    sent = 0
    while time.time() < end:
        pub.sendall(resp("PUBLISH", "aadb-lag-probe", "%.6f" % time.time()))
        pub.recv(64)
        sent += 1
        time.sleep(interval_ms / 1000.0)
    deadline = time.time() + 5
    while len(lags) < sent and time.time() < deadline:
        time.sleep(0.01)
    done.set()
    if not lags:
        print("n/a n/a n/a 0 %d" % sent)
        return
    lags.sort()
    p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    print("%.2f %.2f %.2f %d %d" % (p(0.50), p(0.99), lags[-1], len(lags), sent))


if __name__ == "__main__":
    main()
