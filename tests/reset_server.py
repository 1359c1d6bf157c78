#!/usr/bin/python3
"""A TLS server for issue 15.1's sibling-cancel test (tests/test_engine.c): the first
connection is served (HTTP/1.1, keep-alive, no session tickets, so that nothing but its answer
arrives on it); every later connection is accepted and left silent, its handshake never
answered, and reset (RST) right after the first connection's first answer is written, and
any connection that comes after that is reset at once. A client then sees a handshake fail
at once on its other connections just as its first answer arrives: under the old hold
heuristic that failure ran another request's callback from inside the first answer's
completion.

    reset_server.py --cert PEM --key KEY      prints "PORT n", serves until killed
"""
import argparse
import socket
import ssl
import struct
import sys
import threading

BODY = b'{"ok":1}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
          % (len(BODY), BODY))


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class Server:
    def __init__(self, ctx):
        self.ctx = ctx
        self.lock = threading.Lock()
        self.silent = []      # later connections, until the first answer
        self.answered = False

    def serve_first(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
            s.settimeout(30)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf.split(b"\r\n\r\n", 1)[1]
                s.sendall(ANSWER)
                with self.lock:
                    self.answered = True
                    for o in self.silent:
                        reset(o)
                    self.silent.clear()
        except (OSError, ssl.SSLError):
            pass

    def run(self, ls):
        first = True
        while True:
            c, _ = ls.accept()
            if first:
                threading.Thread(target=self.serve_first, args=(c,), daemon=True).start()
                first = False
                continue
            with self.lock:
                if self.answered:
                    reset(c)
                else:
                    self.silent.append(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.num_tickets = 0
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    print("PORT %d" % ls.getsockname()[1], flush=True)
    Server(ctx).run(ls)


if __name__ == "__main__":
    sys.exit(main())
