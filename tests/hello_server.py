#!/usr/bin/python3
"""A TLS server that records every client's ClientHello as the client sent it.

    hello_server.py --cert PEM --key KEY [--port 0] [--tls-max 1.2] [--ciphers LIST]
                    [--watch-stdin]

Each accepted connection's first bytes are read with MSG_PEEK, before Python's ssl module (or any
TLS library) has seen them, parsed as a ClientHello, and fingerprinted (JA3, JA4). Then the
handshake completes with the certificate given and one HTTP/1.1 GET is answered with a
Yahoo-shaped chart body for the last path segment (Connection: close).
Listens on 127.0.0.1 only. Prints `PORT n`, then one `HELLO <json>` line per connection once it
has ended: the parsed fields, the fingerprints, what was negotiated, or `error`.
Importable: parse_hello(raw) and the fingerprint functions ja3_string() and ja4_string().
"""
import argparse
import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from server import chart_body, price_for  # noqa: E402

MAX_HELLO = 1 << 16        # a ClientHello larger than this is refused, not parsed
HELLO_WAIT_S = 10          # how long a connection may take to send its ClientHello
REQUEST_MAX = 1 << 16
MAX_CONNS = 64             # connections served at once; the rest wait in the backlog

EXT_SNI, EXT_ALPN = 0x0000, 0x0010
JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
                0x0002: "s2", 0xfeff: "d1", 0xfefd: "d2", 0xfefc: "d3"}


def is_grease(v):
    """RFC 8701 reserved values: 0x0a0a, 0x1a1a, ... 0xfafa."""
    return (v & 0x0f0f) == 0x0a0a and (v >> 8) == (v & 0xff)


class Reader:
    """Bounds-checked reads of TLS's big-endian fields and length-prefixed vectors."""

    def __init__(self, data):
        self.data, self.pos = bytes(data), 0

    def left(self):
        return len(self.data) - self.pos

    def take(self, n):
        if n > self.left():
            raise ValueError("truncated: %d bytes wanted, %d left" % (n, self.left()))
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def uint(self, size):
        return int.from_bytes(self.take(size), "big")

    def vector(self, len_size):
        return Reader(self.take(self.uint(len_size)))

    def uints(self, len_size, size):
        v = self.vector(len_size)
        out = []
        while v.left():
            out.append(v.uint(size))
        return out


def hello_extent(buf):
    """(complete, n): whether buf holds the whole first handshake message, and how many bytes
    of records it spans (complete) or at least must be read to know more (not complete)."""
    off, payload = 0, b""
    while True:
        if len(buf) < off + 5:
            return False, off + 5
        ctype, rlen = buf[off], int.from_bytes(buf[off + 3:off + 5], "big")
        if ctype != 22:
            raise ValueError("record type %d, not a handshake" % ctype)
        if len(buf) < off + 5 + rlen:
            return False, off + 5 + rlen
        payload += buf[off + 5:off + 5 + rlen]
        off += 5 + rlen
        if len(payload) >= 4 and len(payload) >= 4 + int.from_bytes(payload[1:4], "big"):
            return True, off


def handshake_message(raw):
    """The first handshake message's bytes out of the records in raw."""
    r, payload = Reader(raw), b""
    while r.left():
        r.take(3)
        payload += r.vector(2).data
    return payload


def parse_hello(raw):
    """The fields of the ClientHello in raw (TLS records as they came off the wire). Lists keep
    GREASE values and wire order; the fingerprint functions drop GREASE themselves."""
    msg = Reader(handshake_message(raw))
    if msg.uint(1) != 1:
        raise ValueError("first handshake message is not a ClientHello")
    body = msg.vector(3)
    h = {"record_version": int.from_bytes(raw[1:3], "big"), "legacy_version": body.uint(2)}
    body.take(32)  # random
    h["session_id_len"] = body.vector(1).left()
    h["ciphers"] = body.uints(2, 2)
    h["compression"] = body.uints(1, 1)
    exts = []
    if body.left():
        ev = body.vector(2)
        while ev.left():
            etype = ev.uint(2)
            exts.append((etype, ev.vector(2).data))
    h["extensions"] = [t for t, _ in exts]
    h["ext_lengths"] = {str(t): len(d) for t, d in exts}
    data = dict(exts)
    h.update(sni=None, groups=[], point_formats=[], sigalgs=[], alpn=[], supported_versions=[],
             psk_modes=[], key_share_groups=[], status_request=None, cert_compression=[])
    if EXT_SNI in data:
        names = Reader(data[EXT_SNI]).vector(2)
        while names.left():
            kind, name = names.uint(1), names.vector(2).data
            if kind == 0:
                h["sni"] = name.decode("ascii", "replace")
    if 10 in data:
        h["groups"] = Reader(data[10]).uints(2, 2)
    if 11 in data:
        h["point_formats"] = Reader(data[11]).uints(1, 1)
    if 13 in data:
        h["sigalgs"] = Reader(data[13]).uints(2, 2)
    if EXT_ALPN in data:
        protos = Reader(data[EXT_ALPN]).vector(2)
        while protos.left():
            h["alpn"].append(protos.vector(1).data.decode("ascii", "replace"))
    if 43 in data:
        h["supported_versions"] = Reader(data[43]).uints(1, 2)
    if 45 in data:
        h["psk_modes"] = Reader(data[45]).uints(1, 1)
    if 51 in data:
        shares = Reader(data[51]).vector(2)
        while shares.left():
            h["key_share_groups"].append(shares.uint(2))
            shares.vector(2)
    if 5 in data:
        h["status_request"] = Reader(data[5]).uint(1)
    if 27 in data:
        h["cert_compression"] = Reader(data[27]).uints(1, 2)
    h["ja3"] = ja3_string(h["legacy_version"], h["ciphers"], h["extensions"], h["groups"],
                          h["point_formats"])
    h["ja3_md5"] = hashlib.md5(h["ja3"].encode()).hexdigest()
    h["ja4"] = ja4_string(h)
    return h


def _dashed(values):
    return "-".join(str(v) for v in values if not is_grease(v))


def ja3_string(legacy_version, ciphers, extensions, groups, point_formats):
    """JA3 (Salesforce): version,ciphers,extensions,groups,point formats in decimal, wire order,
    GREASE dropped. Its MD5 is the JA3 hash."""
    return "%d,%s,%s,%s,%s" % (legacy_version, _dashed(ciphers), _dashed(extensions),
                               _dashed(groups), _dashed(point_formats))


def _sha12(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _alpn_chars(alpn):
    if not alpn or not alpn[0]:
        return "00"
    first = alpn[0].encode("latin-1", "replace")
    if all(chr(b).isascii() and chr(b).isalnum() for b in (first[0], first[-1])):
        return chr(first[0]) + chr(first[-1])
    hexed = first.hex()
    return hexed[0] + hexed[-1]


def ja4_string(h, transport="t"):
    """JA4 (FoxIO, technical_details/JA4.md) of a parsed hello: GREASE ignored everywhere; the
    cipher and extension lists sorted, SNI and ALPN left out of the extension hash but counted."""
    ciphers = [c for c in h["ciphers"] if not is_grease(c)]
    exts = [e for e in h["extensions"] if not is_grease(e)]
    sigalgs = [s for s in h["sigalgs"] if not is_grease(s)]
    versions = [v for v in h["supported_versions"] if not is_grease(v)]
    version = max(versions) if versions else h["legacy_version"]
    part_a = "%s%s%s%02d%02d%s" % (transport, JA4_VERSIONS.get(version, "00"),
                                   "d" if EXT_SNI in exts else "i", min(len(ciphers), 99),
                                   min(len(exts), 99), _alpn_chars(h["alpn"]))
    part_b = _sha12(",".join(sorted("%04x" % c for c in ciphers))) if ciphers else "0" * 12
    hashed = sorted("%04x" % e for e in exts if e not in (EXT_SNI, EXT_ALPN))
    if hashed:
        text = ",".join(hashed)
        if sigalgs:
            text += "_" + ",".join("%04x" % s for s in sigalgs)
        part_c = _sha12(text)
    else:
        part_c = "0" * 12
    return "%s_%s_%s" % (part_a, part_b, part_c)


# ---------------------------------------------------------------- the server

def peek_hello(conn):
    """The raw records of the ClientHello, still unread in conn's receive queue."""
    deadline = time.monotonic() + HELLO_WAIT_S
    want = 5
    while True:
        buf = conn.recv(want, socket.MSG_PEEK)
        if not buf:
            raise ValueError("connection closed before a ClientHello")
        complete, n = hello_extent(buf)
        if complete:
            return buf[:n]
        if n > MAX_HELLO:
            raise ValueError("ClientHello over %d bytes" % MAX_HELLO)
        if len(buf) < want:
            # Only part of it has arrived: a peek cannot wait for the rest, so look again soon.
            if time.monotonic() > deadline:
                raise ValueError("no whole ClientHello within %d s" % HELLO_WAIT_S)
            time.sleep(0.005)
        want = n


def answer(tls):
    req = b""
    while b"\r\n\r\n" not in req:
        chunk = tls.recv(4096)
        if not chunk or len(req) > REQUEST_MAX:
            raise ValueError("no whole request")
        req += chunk
    target = req.split(b"\r\n", 1)[0].split(b" ")[1].decode("ascii", "replace")
    sym = urllib.parse.unquote(target.split("?", 1)[0].rsplit("/", 1)[-1])
    body = chart_body(sym, repr(price_for(sym)))
    head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    tls.sendall(head.encode() + body)
    return sym


def serve(conn, ctx, out, slots):
    rec = {}
    try:
        conn.settimeout(HELLO_WAIT_S)
        raw = peek_hello(conn)
        rec.update(parse_hello(raw))
        rec["raw_hex"] = raw.hex()
        tls = ctx.wrap_socket(conn, server_side=True)
        rec.update(version=tls.version(), cipher=tls.cipher()[0], resumed=tls.session_reused,
                   alpn_selected=tls.selected_alpn_protocol())
        rec["ticker"] = answer(tls)
        conn = tls
    except (OSError, ValueError, IndexError) as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()
        slots.release()
        out("HELLO " + json.dumps(rec, sort_keys=True))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-max", choices=["1.2", "1.3"], default="1.3")
    ap.add_argument("--ciphers", help="the TLS 1.2 cipher list the server accepts (OpenSSL names)")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF")
    args = ap.parse_args(argv)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])
    if args.tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.ciphers:
        ctx.set_ciphers(args.ciphers)

    lock = threading.Lock()

    def out(line):
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    if args.watch_stdin:
        def watch():
            while os.read(0, 4096):
                pass
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(64)
    out("PORT %d" % lsock.getsockname()[1])
    slots = threading.BoundedSemaphore(MAX_CONNS)
    while True:
        slots.acquire()
        conn, _ = lsock.accept()
        threading.Thread(target=serve, args=(conn, ctx, out, slots), daemon=True).start()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
