#!/usr/bin/python3
"""Yahoo-compatible HTTP/1.1 test server for qfetch (Python stdlib only, binds 127.0.0.1).

Serves GET /v8/finance/chart/{SYM} with Yahoo-shaped bodies and misbehaves on demand per ticker
(see SPECIALS below), plus GET /_stats (JSON counters) and GET /_reset. TLS is done by hand with
ssl.MemoryBIO so handshake outcomes, resumption and bytes after a failed handshake are visible.

    server.py --cert server.pem --key server.key [--plain] [--port 0] [--demo]
              [--close-after K] [--silent-close-after K] [--idle-close-ms MS [--lazy-idle-close]]
              [--stats-file F]
              [--fixtures DIR] [--watch-stdin] [--tls-max VER] [--rcvbuf BYTES]
              [--wait-usr1] [--rate-limit PER_S --burst N] [--max-inflight N]
              [--limit-retry-after SEC] [--service-ms MS]

Prints `PORT <n>` once listening; serves until SIGTERM/SIGINT (or stdin EOF with --watch-stdin).
With --wait-usr1 it first prints `WAITING` and binds only when SIGUSR1 arrives (a restart on a
fixed port with the interpreter already loaded). --tls-max 1.0/1.1 offers only those versions
(with `@SECLEVEL=0` so OpenSSL 3 agrees); --rcvbuf shrinks SO_RCVBUF of accepted sockets, so the
unread rest of a large request stays in flight (in the client's send queue) while the server is
not reading. Compression: a request whose Accept-Encoding takes gzip (else deflate) gets its
ordinary responses coded that way, as Yahoo's are; GZIP_, XGZIP_, DEFLATE_, RAWDEFLATE_,
GZIPDRIP_, GZIPCHUNKED_ send a coded body whatever was asked, BADGZIP_, TRUNCGZIP_, BOMB_,
GZIPHUGE_ and BROTLI_ a broken, cut, explosive, oversized or unsupported one. Fault injection for
tests/faults_and_limits.py: RSTHDR_, ALERT_, ALERTRAW_, ALERTCN_,
SLOWLORIS_, EARLY_, EARLYCLOSE_, EARLYRST_, EXTRAREC_ (their handlers say what they send); what
they did shows in /_stats as `special_events`.
Per-address limits, as Yahoo's edge has (tests/faults_and_limits.py, issue 17):
--rate-limit/--burst is a token bucket and --max-inflight a cap on requests being served at
once; a chart request beyond either is answered 429 (with `Retry-After: SEC` when
--limit-retry-after is given) and counted in /_stats as `limited`. --service-ms holds every chart
request that long before its answer, so requests overlap as they would over a real network.
/_stats `arrivals` lists chart requests in arrival order as [symbol, ms since the first].
`price_for(sym)` is importable: the price every ordinary ticker gets.
"""
import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import sys
import time
import urllib.parse
import warnings
import zlib

CHART_PREFIX = "/v8/finance/chart/"
HANDSHAKE_TIMEOUT_S = 10.0
HEADER_TIMEOUT_S = 60.0   # a request's header block must arrive within this once started
LINGER_MAX_S = 300.0      # HANG_/SILENT_ keep a connection at most this long
KEEPALIVE_MAX_S = 600.0   # an idle kept-alive connection is closed after this
AFTER_FAIL_WATCH_S = 0.3  # how long to watch for bytes after a failed TLS handshake
EARLY_PAUSE_S = 0.3       # EARLY_, EARLYCLOSE_: no reading this long after answering early
LINGER_DRAIN_S = 3.0      # EARLYCLOSE_: lingering close reads and discards at most this long
BASE_TIME = 1761768001    # a fixed "now" so bodies are deterministic

YAHOO_404 = (b'{"chart":{"result":null,"error":{"code":"Not Found",'
             b'"description":"No data found, symbol may be delisted"}}}')
YAHOO_429 = b"Edge: Too Many Requests"
HTML_500 = (b"<html><head><title>500 Internal Server Error</title></head>"
            b"<body><h1>Internal Server Error</h1></body></html>")
HTML_503 = (b"<html><head><title>503 Service Unavailable</title></head>"
            b"<body><h1>Service Unavailable</h1></body></html>")
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}

# --demo: the seed's tickers with fixed, plausible data (FB answers 404 like Yahoo today).
DEMO = {
    "VTSAX": ("148.83", "MUTUALFUND", "NAS", "Nasdaq",
              "Vanguard Total Stock Market Index Fund Admiral Shares",
              "Vanguard Total Stock Mkt Idx Adm"),
    "VTIAX": ("37.42", "MUTUALFUND", "NAS", "Nasdaq",
              "Vanguard Total International Stock Index Fund Admiral Shares",
              "Vanguard Total Intl Stock Index"),
    "IJS": ("108.51", "ETF", "PCX", "NYSEArca", "iShares S&P Small-Cap 600 Value ETF",
            "iShares S&P Small-Cap 600 Value"),
    "VSS": ("131.27", "ETF", "PCX", "NYSEArca",
            "Vanguard FTSE All-World ex-US Small-Cap Index Fund ETF Shares",
            "Vanguard FTSE All-World ex-US S"),
    "AAPL": ("269.7", "EQUITY", "NMS", "NasdaqGS", "Apple Inc.", "Apple Inc."),
    "ORCL": ("234.96", "EQUITY", "NYQ", "NYSE", "Oracle Corporation", "Oracle Corporation"),
    "GOOG": ("281.19", "EQUITY", "NMS", "NasdaqGS", "Alphabet Inc.", "Alphabet Inc."),
    "MSFT": ("523.61", "EQUITY", "NMS", "NasdaqGS", "Microsoft Corporation",
             "Microsoft Corporation"),
}


def price_for(sym):
    """Deterministic price of an ordinary ticker: 1.000 .. 899.999, up to 3 decimals."""
    h = int.from_bytes(hashlib.sha256(sym.encode("utf-8")).digest()[:8], "big")
    return (1000 + h % 899000) / 1000


def currency_for(sym):
    if sym.endswith(".DE"):
        return "EUR"
    if sym.endswith(".L"):
        return "GBp"
    if sym.endswith(".T"):
        return "JPY"
    return "USD"


def _j(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _f32(x):
    """Yahoo's bar values are float32 widened to double: 209.3000030517578."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _obj(items):
    """items: (key, raw JSON text) pairs, serialised in the given order."""
    return "{" + ",".join(_j(k) + ":" + v for k, v in items) + "}"


def _period(start, end):
    return {"timezone": "EDT", "start": start, "end": end, "gmtoffset": -14400}


def meta_items(sym, price_text, *, itype="EQUITY", exch="NMS", full_exch="NasdaqGS",
               long_name=None, short_name=None, currency=None, bars=20):
    """Yahoo's meta, key order as Yahoo sends it. price_text None drops regularMarketPrice."""
    try:
        p = float(price_text)
    except (TypeError, ValueError):
        p = 100.0
    if not (p == p) or abs(p) > 1e12:  # NaN or absurd: keep the other fields sane
        p = 100.0
    fund = itype == "MUTUALFUND"
    name = long_name or (sym.title().replace("_", " ") + " Holdings Inc.")
    items = [
        ("currency", _j(currency or currency_for(sym))),
        ("symbol", _j(sym)),
        ("exchangeName", _j(exch)),
        ("fullExchangeName", _j(full_exch)),
        ("instrumentType", _j(itype)),
        ("firstTradeDate", _j(345479400)),
        ("regularMarketTime", _j(BASE_TIME)),
        ("hasPrePostMarketData", _j(not fund)),
        ("gmtoffset", _j(-14400)),
        ("timezone", _j("EDT")),
        ("exchangeTimezoneName", _j("America/New_York")),
    ]
    if price_text is not None:
        items.append(("regularMarketPrice", price_text))
    items += [
        ("fiftyTwoWeekHigh", _j(round(p * 1.21, 2))),
        ("fiftyTwoWeekLow", _j(round(p * 0.74, 2))),
    ]
    if not fund:
        items += [
            ("regularMarketDayHigh", _j(round(p * 1.006, 2))),
            ("regularMarketDayLow", _j(round(p * 0.991, 2))),
            ("regularMarketVolume", _j(int(abs(p) * 1000) % 90000000 + 12345)),
        ]
    items += [
        ("longName", _j(name)),
        ("shortName", _j(short_name or name[:30])),
        ("chartPreviousClose", _j(round(p * 0.97, 2))),
        ("previousClose", _j(round(p * 0.995, 2))),
        ("scale", _j(3)),
        ("priceHint", _j(2)),
        ("currentTradingPeriod", _j({"pre": _period(BASE_TIME - 43201, BASE_TIME - 23401),
                                     "regular": _period(BASE_TIME - 23401, BASE_TIME - 1),
                                     "post": _period(BASE_TIME - 1, BASE_TIME + 14399)})),
        ("tradingPeriods", _j([[_period(BASE_TIME - 23401, BASE_TIME - 1)]])),
        ("dataGranularity", _j("1d")),
        ("range", _j("1mo")),
        ("validRanges", _j(["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd",
                            "max"])),
    ]
    return items


def series(p, bars):
    """timestamp and indicators for `bars` daily bars ending near p."""
    if not (p == p) or abs(p) > 1e12 or p <= 0:
        p = 100.0
    ts, o, h, lo, c, v, adj = [], [], [], [], [], [], []
    for i in range(bars):
        t = BASE_TIME - 23401 - 86400 * (bars - 1 - i)
        base = p * (1 + 0.003 * ((i * 7919) % 13 - 6))
        ts.append(t)
        o.append(_f32(base * 0.998))
        h.append(_f32(base * 1.011))
        lo.append(_f32(base * 0.989))
        c.append(_f32(base))
        v.append(1000000 + (i * 104729) % 9000000)
        adj.append(_f32(base * 0.9993))
    ind = '{"quote":[' + _j({"open": o, "high": h, "low": lo, "close": c, "volume": v}) + \
          '],"adjclose":[' + _j({"adjclose": adj}) + "]}"
    return _j(ts), ind


def chart_body(sym, price_text, *, bars=14, **kw):
    """A compact Yahoo chart body (bytes). price_text is written literally (None: omitted)."""
    meta = _obj(meta_items(sym, price_text, **kw))
    try:
        p = float(price_text)
    except (TypeError, ValueError):
        p = 100.0
    ts, ind = series(p, bars)
    result = "{" + '"meta":' + meta + ',"timestamp":' + ts + ',"indicators":' + ind + "}"
    return ('{"chart":{"result":[' + result + '],"error":null}}').encode("utf-8")


def decoy_body(sym):
    """The real price sits at chart.result[0].meta.regularMarketPrice after several decoys."""
    real = repr(price_for(sym))
    items = meta_items(sym, real, long_name='Decoy "Quoted" Co \\ caf\u00e9 / regularMarketPrice')
    real_item = [kv for kv in items if kv[0] == "regularMarketPrice"][0]
    rest = [kv for kv in items if kv[0] != "regularMarketPrice"]
    rest.reverse()  # unusual key order
    meta = [("note", _j("regularMarketPrice")),
            ("regularMarketPriceHint", _j(424.24)),
            ("nested", _j({"regularMarketPrice": 313.13, "x": [{"regularMarketPrice": 1.5}]})),
            ("label", _j("\"regularMarketPrice\":999.99"))] + rest[:8] + [real_item] + rest[8:]
    ts, ind = series(price_for(sym), 5)
    fake_meta = _obj([("regularMarketPrice", "777.77"), ("symbol", _j(sym))])
    result0 = ("{" + '"events":{"dividends":{"1":{"regularMarketPrice":555.55}}},'
               '"indicators":' + ind + ',"timestamp":' + ts + ',"meta":' + _obj(meta) + "}")
    result1 = '{"meta":' + fake_meta + "}"
    body = ('{"regularMarketPrice":111.11,'
            '"decoy":{"chart":{"result":[{"meta":{"regularMarketPrice":222.22}}]}},'
            '"chart":{"error":null,"result":[' + result0 + "," + result1 + "]}}")
    return body.encode("utf-8")


def big_body(sym):
    """About 1 MB: ~9,500 bars, price in meta."""
    return chart_body(sym, repr(price_for(sym)), bars=9500)


def bad_json_body(sym):
    p = repr(price_for(sym))
    head = '{"chart":{"result":[{"meta":{"currency":"USD",'
    if sym.startswith("BADJSON_TRAIL_"):  # trailing comma
        s = head + '"regularMarketPrice":%s,}}],"error":null}}'
    elif sym.startswith("BADJSON_UNQ_"):  # unquoted key
        s = head + 'regularMarketPrice:%s}}],"error":null}}'
    elif sym.startswith("BADJSON_HTML_"):  # a consent page served as 200
        s = "<!doctype html><html><body>consent %s</body></html>"
    else:  # meta closed with ] instead of }
        s = head + '"regularMarketPrice":%s]}],"error":null}}'
    return (s % p).encode()


class Stats:
    def __init__(self):
        self.reset()
        self.next_id = 0

    def reset(self):
        self.connections = 0
        self.tls_handshakes = 0
        self.tls_handshake_failures = 0
        self.tls_resumed = 0
        self.tls_failed_with_request_bytes = 0
        self.requests_total = 0
        self.per_symbol = {}
        self.per_conn = {}        # conn id -> requests (regular connections only)
        self.intervals = {}       # conn id -> [open_t, close_t or None]
        self.bytes_sent = 0
        self.idle_closes = 0
        self.pipelined = 0
        self.lazy_idle_closes = 0
        self.status_counts = {}
        self.tls_versions = {}    # negotiated version -> handshakes
        self.sni = {}             # server name sent in the ClientHello ("" for none) -> handshakes
        self.targets = {}         # symbol -> raw request targets (last 5)
        self.headers = {}         # symbol -> last request's headers (lower-case names)
        self.failure_reasons = []
        self.events = []          # what the fault-injecting specials did (last 50)
        self.limited = 0          # 429s from --rate-limit/--max-inflight
        self.arrivals = []        # [symbol, ms since the first] per chart request (last 2000)
        self.t0 = None

    def event(self, **kw):
        """Records kw (later changes to the returned dict show in /_stats too)."""
        self.events.append(kw)
        del self.events[:-50]
        return kw

    def max_concurrent(self):
        now = time.monotonic()
        ev = []
        for a, b in self.intervals.values():
            ev.append((a, 1))
            ev.append((b if b is not None else now + 1, -1))
        ev.sort(key=lambda e: (e[0], e[1]))
        cur = best = 0
        for _, d in ev:
            cur += d
            best = max(best, cur)
        return best

    def snapshot(self):
        return {
            "connections": self.connections,
            "tls_handshakes": self.tls_handshakes,
            "tls_handshake_failures": self.tls_handshake_failures,
            "tls_resumed": self.tls_resumed,
            "tls_failed_with_request_bytes": self.tls_failed_with_request_bytes,
            "requests_total": self.requests_total,
            "requests_per_connection": [self.per_conn[k] for k in sorted(self.per_conn)],
            "requests_per_symbol": self.per_symbol,
            "max_concurrent_connections": self.max_concurrent(),
            "open_connections": sum(1 for a, b in self.intervals.values() if b is None),
            "bytes_sent": self.bytes_sent,
            "idle_closes": self.idle_closes,
            "pipelined": self.pipelined,
            "lazy_idle_closes": self.lazy_idle_closes,
            "status_counts": self.status_counts,
            "targets_per_symbol": self.targets,
            "headers_per_symbol": self.headers,
            "handshake_failure_reasons": self.failure_reasons[-20:],
            "tls_versions": self.tls_versions,
            "sni_names": self.sni,
            "special_events": self.events,
            "limited": self.limited,
            "arrivals": self.arrivals,
        }


STATS = Stats()


class Closed(Exception):
    pass


class Conn:
    """One accepted connection: byte I/O (plain or TLS over MemoryBIO) plus HTTP bookkeeping."""

    def __init__(self, srv, reader, writer):
        self.srv = srv
        self.reader, self.writer = reader, writer
        self.tls = None
        if srv.ctx is not None:
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = srv.ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.buf = bytearray()
        self.nreq = 0
        self.control = False
        self.resumed = False
        self.handshaken = False
        self.closed = False
        self.must_close = False
        self.early = False        # the request line was dispatched before its header block ended
        self.early_seen = 0       # request bytes (plaintext) received when it was dispatched
        self.accept_encoding = ""  # of the request being answered
        STATS.next_id += 1
        self.id = STATS.next_id

    # ---- raw and TLS byte I/O ----
    def _flush_tls(self):
        data = self.out.read()
        if data:
            self.writer.write(data)

    async def _raw_read(self):
        try:
            return await self.reader.read(65536)
        except (ConnectionError, OSError):
            return b""

    def raw_write(self, data):
        """Bytes straight onto TCP, past the TLS layer (hand-made records)."""
        if not self.closed:
            self.writer.write(data)

    async def handshake(self):
        while True:
            try:
                self.tls.do_handshake()
                self._flush_tls()
                self.handshaken = True
                return
            except ssl.SSLWantReadError:
                self._flush_tls()
                raw = await self._raw_read()
                if not raw:
                    raise Closed("EOF during handshake")
                self.inc.write(raw)
            except ssl.SSLError:
                self._flush_tls()  # let the alert reach the peer
                raise

    async def read(self):
        """Some plaintext bytes, or b'' at EOF / close_notify / TLS error."""
        if self.tls is None:
            return await self._raw_read()
        while True:
            try:
                data = self.tls.read(65536)
                self._flush_tls()
                return data
            except ssl.SSLWantReadError:
                self._flush_tls()
                raw = await self._raw_read()
                if not raw:
                    return b""
                self.inc.write(raw)
            except ssl.SSLError:  # SSLZeroReturnError (close_notify) included
                return b""

    def write(self, data):
        if self.closed:
            return
        STATS.bytes_sent += len(data) if not self.control else 0
        if self.tls is None:
            self.writer.write(data)
            return
        view = memoryview(data)
        while len(view):
            n = self.tls.write(view)
            view = view[n:]
        self._flush_tls()

    async def drain(self):
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            raise Closed("peer went away")

    async def close(self, notify=True):
        """Clean close: TLS close_notify (when notify) then FIN."""
        if self.closed:
            return
        self.closed = True
        if self.tls is not None and notify and self.handshaken:
            try:
                self.tls.unwrap()
            except (ssl.SSLError, ValueError):
                pass
            try:
                self._flush_tls()
            except Exception:
                pass
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (Exception, asyncio.CancelledError):
            pass

    def reset(self):
        """RST: SO_LINGER 0 then close."""
        if self.closed:
            return
        self.closed = True
        sock = self.writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.writer.transport.abort()

    async def wait_peer_close(self, limit=LINGER_MAX_S):
        """Keep the connection open, discarding input, until the peer closes (bounded)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(self.read(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not data:
                break

    # ---- HTTP helpers ----
    def head(self, status, headers=(), *, version="HTTP/1.1", reason=None, close=False):
        lines = ["%s %d %s" % (version, status, reason or REASONS.get(status, "Unknown"))]
        lines += ["%s: %s" % kv for kv in headers]
        if (close or self.must_close) and version == "HTTP/1.1":
            lines.append("Connection: close")
        if not self.control:
            STATS.status_counts[str(status)] = STATS.status_counts.get(str(status), 0) + 1
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def respond(self, status, body, ctype="application/json;charset=utf-8", extra=(),
                      close=False, head_only=False):
        """head_only: the answer to a HEAD request, whose body is never sent (RFC 9110 9.3.2).
        The body is coded as the request's Accept-Encoding allows (gzip first), as Yahoo does."""
        coding = negotiate(self.accept_encoding) if not self.control else None
        if coding:
            body = encode(coding, body)
            extra = list(extra) + [("Content-Encoding", coding)]
        hdrs = yahoo_headers(ctype) + list(extra) + [("Content-Length", str(len(body)))]
        self.write(self.head(status, hdrs, close=close) + (b"" if head_only else body))
        await self.drain()
        return not (close or self.must_close)


def negotiate(accept):
    """The coding an Accept-Encoding value takes: gzip, else deflate, else None (q=0 refuses)."""
    ok = set()
    for item in accept.split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip().lower()
        if q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        ok.add(name.strip().lower())
    for c in ("gzip", "deflate"):
        if c in ok:
            return c
    return None


def encode(coding, body):
    """gzip (no timestamp: bytes are deterministic), deflate zlib-wrapped, or raw deflate."""
    if coding in ("gzip", "x-gzip"):
        co = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
    elif coding == "raw":
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
    else:
        co = zlib.compressobj(6, zlib.DEFLATED, 15)
    return co.compress(body) + co.flush()


_BOMB = {}


def bomb_body():
    """gzip of 16 MiB of spaces: about 16 KB that inflates about 1000 times."""
    if "bomb" not in _BOMB:
        _BOMB["bomb"] = encode("gzip", b" " * (16 << 20))
    return _BOMB["bomb"]


def huge_body(sym):
    """gzip of a valid chart body of about 9 MiB (bars of varied numbers, so it inflates only
    about 5 times): over the 8 MiB cap once inflated, without looking like a bomb."""
    if "huge" not in _BOMB:
        _BOMB["huge"] = encode("gzip", chart_body(sym, repr(price_for(sym)), bars=82000))
    return _BOMB["huge"]


def yahoo_headers(ctype):
    return [("Content-Type", ctype),
            ("Cache-Control", "public, max-age=10, stale-while-revalidate=20"),
            ("vary", "Origin,Accept-Encoding"),
            ("y-rid", "3be2e5tjre5iu"),
            ("x-envoy-upstream-service-time", "2"),
            ("Server", "ATS"),
            ("Age", "0"),
            ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())),
            ("Strict-Transport-Security", "max-age=31536000")]


# ---- per-ticker behaviours: coroutine(conn, sym) -> True to keep the connection ----

async def h_normal(c, sym):
    return await c.respond(200, chart_body(sym, repr(price_for(sym))))


async def h_price(c, sym):
    return await c.respond(200, chart_body(sym, sym[len("PRICE_"):]))


async def h_404(c, sym):
    return await c.respond(404, YAHOO_404)


async def h_chunked(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    c.write(c.head(200, yahoo_headers("application/json;charset=utf-8") +
                   [("Transfer-Encoding", "chunked"), ("Trailer", "X-Trailer")]))
    sizes = [1, 7, 3, 31, 2, 64, 5, 128, 11, 256, 1, 1000]
    pos = i = 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        piece = body[pos:pos + n]
        size = ("%x" if i % 2 else "%X") % len(piece)
        ext = ";a=b" if i % 3 == 0 else (';name="q v"' if i % 5 == 0 else "")
        c.write(size.encode() + ext.encode() + b"\r\n" + piece + b"\r\n")
        pos += n
        i += 1
        if i % 8 == 0:
            await c.drain()
    c.write(b"0;last=1\r\nX-Trailer: done\r\n\r\n")
    await c.drain()
    return not c.must_close


async def _drip(c, data):
    """The whole response one byte per write."""
    for i in range(len(data)):
        c.write(data[i:i + 1])
        await c.drain()
        if i % 64 == 63:
            await asyncio.sleep(0.001)
    return not c.must_close


async def _chunks(c, body, sizes):
    """body in chunks of the given sizes (cycled), then the last chunk."""
    pos = i = 0
    while pos < len(body):
        piece = body[pos:pos + sizes[i % len(sizes)]]
        c.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        pos += len(piece)
        i += 1
        if i % 8 == 0:
            await c.drain()
    c.write(b"0\r\n\r\n")
    await c.drain()
    return not c.must_close


async def h_drip(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    return await _drip(c, c.head(200, yahoo_headers("application/json;charset=utf-8") +
                                 [("Content-Length", str(len(body)))]) + body)


async def h_http10(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    c.write(c.head(200, [("Content-Type", "application/json;charset=utf-8"), ("Server", "ATS")],
                   version="HTTP/1.0") + body)
    await c.drain()
    return False


async def h_close(c, sym):
    return await c.respond(200, chart_body(sym, repr(price_for(sym))), close=True)


async def h_rate(c, sym):
    if c.srv.hits[sym] == 1:
        return await c.respond(429, YAHOO_429, "text/plain;charset=utf-8", [("Retry-After", "1")])
    return await h_normal(c, sym)


async def h_rate_always(c, sym):
    return await c.respond(429, YAHOO_429, "text/plain;charset=utf-8", [("Retry-After", "1")])


async def h_rate_no_ra(c, sym):
    return await c.respond(429, YAHOO_429, "text/plain;charset=utf-8")


async def h_rate_json(c, sym):
    """RATEJSON_: always 429, with a Yahoo JSON error body that names the symbol delisted."""
    return await c.respond(429, YAHOO_404)


async def h_rate_long(c, sym):
    """RATELONG_: 429 asking for an hour, far beyond any client's retry cap."""
    return await c.respond(429, YAHOO_429, "text/plain;charset=utf-8", [("Retry-After", "3600")])


async def h_err503_ra(c, sym):
    """ERR503RA_: the first request a 503 with Retry-After: 1, then the price."""
    if c.srv.hits[sym] == 1:
        return await c.respond(503, HTML_503, "text/html; charset=utf-8", [("Retry-After", "1")])
    return await h_normal(c, sym)


async def h_err500(c, sym):
    return await c.respond(500, HTML_500, "text/html; charset=utf-8")


async def h_err503(c, sym):
    if c.srv.hits[sym] == 1:
        return await c.respond(503, HTML_503, "text/html; charset=utf-8")
    return await h_normal(c, sym)


async def h_badjson(c, sym):
    return await c.respond(200, bad_json_body(sym))


async def h_truncjson(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    cut = body.index(b'"timestamp"') + 20  # after meta (and its price), inside the array
    return await c.respond(200, body[:cut])


async def h_nullprice(c, sym):
    return await c.respond(200, chart_body(sym, "null"))


async def h_noprice(c, sym):
    return await c.respond(200, chart_body(sym, None))


async def h_strprice(c, sym):
    return await c.respond(200, chart_body(sym, _j(repr(price_for(sym)))))


async def h_decoy(c, sym):
    return await c.respond(200, decoy_body(sym))


async def h_trunc(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    hdrs = yahoo_headers("application/json;charset=utf-8") + [("Content-Length",
                                                               str(len(body) + 100))]
    c.write(c.head(200, hdrs) + body)
    await c.drain()
    await c.close()
    return False


async def h_hang(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    hdrs = yahoo_headers("application/json;charset=utf-8") + [("Content-Length", str(len(body)))]
    c.write(c.head(200, hdrs))
    await c.drain()
    await c.wait_peer_close()
    return False


async def h_silent(c, sym):
    await c.wait_peer_close()
    return False


async def h_rst(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    hdrs = yahoo_headers("application/json;charset=utf-8") + [("Content-Length", str(len(body)))]
    c.write(c.head(200, hdrs) + body[:len(body) // 2])
    await c.drain()
    await asyncio.sleep(0.05)
    c.reset()
    return False


async def h_extra(c, sym):
    body = chart_body(sym, repr(price_for(sym)))
    hdrs = yahoo_headers("application/json;charset=utf-8") + [("Content-Length", str(len(body)))]
    fake = chart_body("EXTRA_FAKE", "0.01")
    garbage = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\n"
               b"Content-Length: " + str(len(fake)).encode() + b"\r\n\r\n" + fake)
    c.write(c.head(200, hdrs) + body + garbage)
    await c.drain()
    return not c.must_close


async def h_big(c, sym):
    body = big_body(sym)
    c.write(c.head(200, yahoo_headers("application/json;charset=utf-8") +
                   [("Transfer-Encoding", "chunked")]))
    step = 16000
    for pos in range(0, len(body), step):
        piece = body[pos:pos + step]
        c.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        await c.drain()
    c.write(b"0\r\n\r\n")
    await c.drain()
    return not c.must_close


async def h_slow(c, sym):
    rest = sym[len("SLOW_"):]
    ms = rest.split("_", 1)[0]
    delay = int(ms) / 1000 if ms.isdigit() else 0
    await asyncio.sleep(min(delay, 60))
    return await h_normal(c, sym)


async def h_fixture(c, sym):
    fx = c.srv.fixture(sym[len("FIX_"):])
    if fx is None:
        return await c.respond(404, YAHOO_404)
    status, headers, body, chunked = fx
    if not chunked:
        return await _send_exact(c, status, headers + [("Content-Length", str(len(body)))], body)
    c.write(c.head(status, headers + [("Transfer-Encoding", "chunked")]))
    for pos in range(0, len(body), 8192):
        piece = body[pos:pos + 8192]
        c.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        await c.drain()
    c.write(b"0\r\n\r\n")
    await c.drain()
    return not c.must_close


async def _send_exact(c, status, headers, body):
    c.write(c.head(status, headers) + body)
    await c.drain()
    return not c.must_close


def _json_head(c, body):
    return c.head(200, yahoo_headers("application/json;charset=utf-8") +
                  [("Content-Length", str(len(body)))])


async def h_rst_headers(c, sym):
    """RSTHDR_: the status line and part of the header block, then RST (SO_LINGER 0)."""
    body = chart_body(sym, repr(price_for(sym)))
    head = _json_head(c, body)
    cut = head.index(b"Content-Length")  # mid header block, before the framing is known
    c.write(head[:cut])
    await c.drain()
    await asyncio.sleep(0.05)
    STATS.event(sym=sym, kind="rst_headers", sent=cut)
    c.reset()
    return False


def record_header(ctype, payload):
    return bytes([ctype, 3, 3]) + len(payload).to_bytes(2, "big")


async def h_alert(c, sym):
    """ALERT_*: half the body, then a TLS alert, then TCP FIN without close_notify.

    ALERT_     a genuine encrypted fatal alert made by the server's own OpenSSL: a forged
               application-data record (64 random bytes) is fed into our incoming BIO; decrypting
               it fails, so OpenSSL queues a fatal `bad_record_mac` alert (encrypted with the
               current traffic keys) which is flushed to the client.
    ALERTRAW_  a hand-written plaintext fatal alert record: 15 03 03 00 02 02 50 (internal_error),
               which a TLS 1.3 peer must reject as a bad record type.
    ALERTCN_   close_notify (SSLObject.unwrap), i.e. a clean TLS close in the middle of the body.
    Without TLS (--plain) every variant resets the connection instead."""
    body = chart_body(sym, repr(price_for(sym)))
    c.write(_json_head(c, body) + body[:len(body) // 2])
    await c.drain()
    await asyncio.sleep(0.05)
    if c.tls is None:
        c.reset()
        return False
    if sym.startswith("ALERTCN_"):
        STATS.event(sym=sym, kind="close_notify")
        await c.close()
        return False
    if sym.startswith("ALERTRAW_"):
        alert = record_header(21, b"\x02\x50") + b"\x02\x50"
        reason = "hand-written plaintext alert"
    else:
        c.inc.write(record_header(23, b"x" * 64) + os.urandom(64))
        reason = "no error"
        try:
            c.tls.read(65536)
        except ssl.SSLError as e:
            reason = e.reason or str(e)
        alert = c.out.read()
    c.raw_write(alert)
    STATS.event(sym=sym, kind="alert", reason=reason, bytes=len(alert),
                record_types=record_types(alert))
    await c.drain()
    await asyncio.sleep(0.05)
    c.closed = True
    c.writer.close()  # FIN, no close_notify
    return False


async def h_slowloris(c, sym):
    """SLOWLORIS_: the whole response, one byte per second (bounded to 300 bytes)."""
    body = chart_body(sym, repr(price_for(sym)))
    data = _json_head(c, body) + body
    sent = 0
    for i in range(min(len(data), 300)):
        if c.closed or c.writer.transport.is_closing():
            break
        c.write(data[i:i + 1])
        sent += 1
        await c.drain()
        await asyncio.sleep(1.0)
    STATS.event(sym=sym, kind="slowloris", sent=sent)
    return False


async def h_early(c, sym):
    """EARLY*_: answered as soon as the request line is decrypted, before the rest of the
    header block has arrived (a request longer than one 16 KiB TLS record, e.g. a 40 KB
    User-Agent, makes the difference visible); the reply is written while the rest of the request
    is still unread. On loopback the client's kernel buffers the whole request (its send buffer
    autotunes to MBs), so its write() returns; --rcvbuf only keeps the rest in flight longer.

    EARLY_       200 with keep-alive; no reading for EARLY_PAUSE_S, then the rest of the request
                 is read and the connection is reused for the next request.
    EARLYCLOSE_  200 with Connection: close, no reading for EARLY_PAUSE_S, close_notify and FIN;
                 then a lingering close: the rest is read and discarded until the client closes.
    EARLYRST_    200 with Connection: close, then 50 ms later an abortive close (RST) with the
                 rest of the request unread."""
    body = chart_body(sym, repr(price_for(sym)))
    before = c.early_seen
    close = not sym.startswith("EARLY_")
    transport = c.writer.transport
    transport.pause_reading()
    c.write(c.head(200, yahoo_headers("application/json;charset=utf-8") +
                   [("Content-Length", str(len(body)))], close=close) + body)
    await c.drain()
    ev = STATS.event(sym=sym, kind="early", early=c.early, before=before)
    if sym.startswith("EARLYRST_"):
        await asyncio.sleep(0.05)
        c.reset()
        return False
    await asyncio.sleep(EARLY_PAUSE_S)
    transport.resume_reading()
    if sym.startswith("EARLYCLOSE_"):
        if c.tls is not None:
            try:
                c.tls.unwrap()
            except (ssl.SSLError, ValueError):
                pass
            c._flush_tls()
        if transport.can_write_eof():
            transport.write_eof()
    # Read the rest of the header block (or, for a lingering close, everything until EOF).
    deadline = time.monotonic() + (LINGER_DRAIN_S if close else HEADER_TIMEOUT_S)
    total = before
    while time.monotonic() < deadline:
        if c.early and not close:
            end = c.buf.find(b"\r\n\r\n")
            if end >= 0 or c.buf.startswith(b"\r\n"):
                cut = end + 4 if end >= 0 else 2
                total += cut
                del c.buf[:cut]
                c.early = False
                break
        try:
            # A lingering close discards raw TCP bytes: the TLS session is shut down.
            data = await asyncio.wait_for(c._raw_read() if close else c.read(),
                                          max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if not data:
            break
        if close:
            ev["lingering_raw_bytes"] = ev.get("lingering_raw_bytes", 0) + len(data)
        else:
            c.buf += data
    if not close:
        ev["total"] = total
    if close:
        c.closed = True
        transport.abort()
        return False
    return not c.must_close


async def h_extra_record(c, sym):
    """EXTRAREC_: like EXTRA_, but the stray second response is its own TLS record, written
    right after the real response (one TCP write); a record-at-a-time reader sees the real
    response end exactly at a read boundary."""
    body = chart_body(sym, repr(price_for(sym)))
    fake = chart_body("EXTRA_FAKE", "0.01")
    garbage = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\n"
               b"Content-Length: " + str(len(fake)).encode() + b"\r\n\r\n" + fake)
    if c.tls is None:
        c.write(_json_head(c, body) + body + garbage)
    else:
        c.tls.write(_json_head(c, body) + body)  # record(s) 1
        c.tls.write(garbage)                     # record 2: the stray response
        c._flush_tls()
    STATS.event(sym=sym, kind="extra_record")
    await c.drain()
    return not c.must_close


async def _send_coded(c, coding, body, label=None, chunks=None):
    """body already coded; label: the Content-Encoding sent (default coding); chunks: sizes."""
    hdrs = yahoo_headers("application/json;charset=utf-8") + [("Content-Encoding",
                                                               label or coding)]
    if chunks is None:
        return await _send_exact(c, 200, hdrs + [("Content-Length", str(len(body)))], body)
    c.write(c.head(200, hdrs + [("Transfer-Encoding", "chunked")]))
    return await _chunks(c, body, chunks)


async def h_coded(c, sym):
    """GZIP_, XGZIP_ (labelled x-gzip), DEFLATE_ (zlib-wrapped), RAWDEFLATE_ (raw, labelled
    deflate), GZIPCHUNKED_ (two gzip members in odd chunks): sent coded whatever was asked."""
    body = chart_body(sym, repr(price_for(sym)))
    if sym.startswith("RAWDEFLATE_"):
        return await _send_coded(c, "raw", encode("raw", body), "deflate")
    if sym.startswith("DEFLATE_"):
        return await _send_coded(c, "deflate", encode("deflate", body))
    if sym.startswith("XGZIP_"):
        return await _send_coded(c, "x-gzip", encode("gzip", body))
    if sym.startswith("GZIPCHUNKED_"):
        half = len(body) // 2  # RFC 1952: members in a row make one stream
        coded = encode("gzip", body[:half]) + encode("gzip", body[half:])
        return await _send_coded(c, "gzip", coded, chunks=[1, 7, 3, 31, 2, 64, 5, 128])
    return await _send_coded(c, "gzip", encode("gzip", body))


async def h_gzip_drip(c, sym):
    """GZIPDRIP_: a gzip body, the whole response one byte per write."""
    body = encode("gzip", chart_body(sym, repr(price_for(sym))))
    return await _drip(c, c.head(200, yahoo_headers("application/json;charset=utf-8") +
                                 [("Content-Encoding", "gzip"),
                                  ("Content-Length", str(len(body)))]) + body)


async def h_bad_coded(c, sym):
    """BADGZIP_: gzip with a byte of its deflate data flipped; TRUNCGZIP_: the first half of
    a gzip stream, correctly framed; BOMB_: 16 MiB of spaces gzipped; GZIPHUGE_: a real chart
    body of 9 MiB gzipped; BROTLI_: Content-Encoding br (the bytes are not even brotli)."""
    body = chart_body(sym, repr(price_for(sym)))
    if sym.startswith("BADGZIP_"):
        coded = bytearray(encode("gzip", body))
        coded[len(coded) // 3] ^= 0x55
        return await _send_coded(c, "gzip", bytes(coded))
    if sym.startswith("TRUNCGZIP_"):
        coded = encode("gzip", body)
        return await _send_coded(c, "gzip", coded[:len(coded) // 2])
    if sym.startswith("BOMB_"):
        return await _send_coded(c, "gzip", bomb_body(), chunks=[16384])
    if sym.startswith("GZIPHUGE_"):
        return await _send_coded(c, "gzip", huge_body(sym), chunks=[65536])
    return await _send_coded(c, "br", body, "br")

# HOSTILE_<KIND>_...: text a hostile server sends, spliced raw into the JSON (integration.py
# hostile_text_*): C1 controls, bidi controls, invalid UTF-8, CSV formulas.
HOSTILE_CURRENCY = {
    "CSI": b"\xc2\x9b2J\xe2\x80\xae",       # C1 CSI (erases a screen), RIGHT-TO-LEFT OVERRIDE
    "ESC": b"\\u009b2J\\u202e",           # the same as JSON escapes
    "BAD": b"U\xffS\xc3D",                # a stray byte and a cut sequence
    "EQ": b"=1+2", "AT": b"@SUM(1)", "PLUS": b"+1", "MINUS": b"-1+2",
}
HOSTILE_DESC = (b"\\u001b[2J\xc2\x9b2J \xe2\x80\xae\xe2\x81\xa6evil\xff\xc3 \\u2066x\\u2069 "
                b"\xc2\x85=cmd\\u2028")


async def h_hostile(c, sym):
    kind = sym.split("_")[1]
    if kind == "ERR":
        return await c.respond(404, b'{"chart":{"result":null,"error":{"code":"Not Found",'
                                    b'"description":"' + HOSTILE_DESC + b'"}}}')
    body = chart_body(sym, repr(price_for(sym)), currency="@@CUR@@")
    return await c.respond(200, body.replace(b"@@CUR@@", HOSTILE_CURRENCY[kind]))


async def h_demo(c, sym):
    price, itype, exch, full, long_name, short_name = DEMO[sym]
    body = chart_body(sym, price, itype=itype, exch=exch, full_exch=full, long_name=long_name,
                      short_name=short_name, currency="USD")
    return await c.respond(200, body)


SPECIALS = [
    ("PRICE_", h_price), ("CHUNKED_", h_chunked), ("DRIP_", h_drip), ("HTTP10_", h_http10),
    ("CLOSE_", h_close), ("DELISTED_", h_404), ("RATEALWAYS_", h_rate_always),
    ("RATE_", h_rate), ("RATENORA_", h_rate_no_ra), ("RATELONG_", h_rate_long),
    ("RATEJSON_", h_rate_json), ("ERR503RA_", h_err503_ra), ("ERR500_", h_err500),
    ("ERR503_", h_err503), ("BADJSON_", h_badjson), ("TRUNCJSON_", h_truncjson),
    ("NULLPRICE_", h_nullprice), ("NOPRICE_", h_noprice),
    ("STRPRICE_", h_strprice), ("DECOY_", h_decoy), ("TRUNC_", h_trunc), ("HANG_", h_hang),
    ("SILENT_", h_silent), ("RST_", h_rst), ("EXTRA_", h_extra), ("BIG_", h_big),
    ("SLOW_", h_slow), ("FIX_", h_fixture), ("HOSTILE_", h_hostile),
    # fault injection (tests/faults_and_limits.py)
    ("RSTHDR_", h_rst_headers), ("ALERT_", h_alert), ("ALERTRAW_", h_alert),
    ("ALERTCN_", h_alert), ("SLOWLORIS_", h_slowloris), ("EARLY_", h_early),
    ("EARLYCLOSE_", h_early), ("EARLYRST_", h_early), ("EXTRAREC_", h_extra_record),
    # compression (tests/cli_fetch.py)
    ("GZIP_", h_coded), ("GZIPCHUNKED_", h_coded), ("GZIPDRIP_", h_gzip_drip),
    ("XGZIP_", h_coded), ("DEFLATE_", h_coded), ("RAWDEFLATE_", h_coded),
    ("BADGZIP_", h_bad_coded), ("TRUNCGZIP_", h_bad_coded), ("BOMB_", h_bad_coded),
    ("GZIPHUGE_", h_bad_coded), ("BROTLI_", h_bad_coded),
]


def behaviour(sym, demo):
    if demo and sym in DEMO:
        return h_demo
    if sym == "FB":
        return h_404
    for prefix, fn in SPECIALS:
        if sym.startswith(prefix):
            return fn
    return h_normal


class Limiter:
    """--rate-limit/--burst: a token bucket (full at start, refilled continuously);
    --max-inflight: requests being served at once. A request that gets no token or slot is
    refused; a refused request takes neither."""

    def __init__(self, args):
        self.rate, self.burst, self.max_inflight = args.rate_limit, args.burst, args.max_inflight
        self.active = bool(self.rate or self.max_inflight)
        self.tokens = float(self.burst or 1)
        self.t_fill = time.monotonic()
        self.inflight = 0

    def admit(self):
        if self.rate:
            now = time.monotonic()
            self.tokens = min(float(self.burst or 1),
                              self.tokens + (now - self.t_fill) * self.rate)
            self.t_fill = now
            if self.tokens < 1:
                return False
        if self.max_inflight and self.inflight >= self.max_inflight:
            return False
        if self.rate:
            self.tokens -= 1
        self.inflight += 1
        return True

    def release(self):
        self.inflight -= 1


class Server:
    def __init__(self, args):
        self.args = args
        self.limiter = Limiter(args)
        self.ctx = None
        if not args.plain:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(args.cert, args.key)
            if args.tls_max:
                self.limit_tls(args.tls_max)
            if args.tickets is not None:
                self.ctx.num_tickets = args.tickets
            self.ctx.sni_callback = self.on_sni
        self.hits = {}  # symbol -> requests seen, for first-time behaviours (never reset)
        self.tasks = set()
        self.fixtures = {}
        self.fixdir = args.fixtures

    @staticmethod
    def on_sni(sslobj, name, ctx):
        STATS.sni[name or ""] = STATS.sni.get(name or "", 0) + 1

    def limit_tls(self, ver):
        """Offer nothing newer than ver; below 1.2, also the old versions OpenSSL 3 disables at
        its default security level (SHA-1 handshake signatures need @SECLEVEL=0)."""
        names = {"1.0": "TLSv1", "1.1": "TLSv1_1", "1.2": "TLSv1_2", "1.3": "TLSv1_3"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            top = getattr(ssl.TLSVersion, names[ver])
            if ver in ("1.0", "1.1"):
                self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
                self.ctx.minimum_version = ssl.TLSVersion.TLSv1
            self.ctx.maximum_version = top

    def fixture(self, stem):
        """(status, headers, body, chunked) for a captured Yahoo response, or None."""
        if stem in self.fixtures:
            return self.fixtures[stem]
        d = self.fixdir
        if not d or "/" in stem or stem.startswith("."):
            return None
        result = None
        cands = [(os.path.join(d, stem + ".json"), "raw"),
                 (os.path.join(d, stem + ".recording.json"), "rec"),
                 (os.path.join(d, "errors", stem + ".json"), "err"),
                 (os.path.join(d, "errors", stem + ".txt"), "err")]
        for path, kind in cands:
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                data = f.read()
            ctype = "application/json;charset=utf-8"
            if kind == "raw":
                result = (200, yahoo_headers(ctype), data, len(data) > 100000)
            elif kind == "err":
                status = int(stem[:3]) if stem[:3].isdigit() else 200
                if path.endswith(".txt"):
                    ctype = "text/plain;charset=utf-8"
                result = (status, yahoo_headers(ctype), data, False)
            else:
                rec = json.loads(data)["response"]
                body = json.dumps(rec["bodyJson"], separators=(",", ":"),
                                  ensure_ascii=False).encode("utf-8")
                hdrs = [(k, v) for k, v in rec["headers"].items()
                        if k.lower() not in ("content-length", "transfer-encoding",
                                             "content-encoding", "connection")]
                chunked = "content-length" not in {k.lower() for k in rec["headers"]}
                result = (int(rec["status"]), hdrs, body, chunked)
            break
        self.fixtures[stem] = result
        return result

    async def on_client(self, reader, writer):
        task = asyncio.current_task()
        self.tasks.add(task)
        c = Conn(self, reader, writer)
        STATS.connections += 1
        STATS.intervals[c.id] = [time.monotonic(), None]
        STATS.per_conn[c.id] = 0
        try:
            if c.tls is not None:
                try:
                    await asyncio.wait_for(c.handshake(), HANDSHAKE_TIMEOUT_S)
                except (ssl.SSLError, Closed, asyncio.TimeoutError, OSError) as e:
                    STATS.tls_handshake_failures += 1
                    STATS.failure_reasons.append(str(e)[:200])
                    await self.watch_after_failure(c)
                    return
                STATS.tls_handshakes += 1
                ver = c.tls.version() or "?"
                STATS.tls_versions[ver] = STATS.tls_versions.get(ver, 0) + 1
                c.resumed = bool(c.tls.session_reused)
                STATS.tls_resumed += int(c.resumed)
            await self.serve(c)
        except (Closed, ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            if c.id in STATS.intervals:
                STATS.intervals[c.id][1] = time.monotonic()
            if not c.closed:
                c.closed = True
                writer.transport.abort()
            self.tasks.discard(task)

    async def watch_after_failure(self, c):
        """Counts a connection that keeps sending TLS records after its handshake failed."""
        data = bytearray(c.inc.read())
        deadline = time.monotonic() + AFTER_FAIL_WATCH_S
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(c._raw_read(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if not raw:
                break
            data += raw
        if any(t == 23 for t in record_types(bytes(data))):
            STATS.tls_failed_with_request_bytes += 1

    async def read_request(self, c, idle_timeout):
        """(method, target, version, headers), or None at EOF or after an idle close."""
        deadline = None
        if c.buf and c.nreq > 0 and not c.control:
            STATS.pipelined += 1  # sent before the answer to the one before it
        while True:
            end = c.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            early = self.early_request_line(c)
            if early is not None:
                return early
            if len(c.buf) > 65536:
                raise Closed("header block too large")
            waiting_idle = not c.buf and deadline is None
            if waiting_idle:
                timeout = idle_timeout or KEEPALIVE_MAX_S
            else:
                deadline = deadline or time.monotonic() + HEADER_TIMEOUT_S
                timeout = max(0.01, deadline - time.monotonic())
            try:
                data = await asyncio.wait_for(c.read(), timeout)
            except asyncio.TimeoutError:
                if waiting_idle and idle_timeout:
                    STATS.idle_closes += 1
                    await c.close()
                    return None
                raise Closed("request timeout")
            if not data:
                return None
            c.buf += data
            deadline = deadline or time.monotonic() + HEADER_TIMEOUT_S
        head = bytes(c.buf[:end]).decode("latin-1")
        c.early, c.early_seen = False, end + 4
        del c.buf[:end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise Closed("bad request line")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0") or 0)
        while len(c.buf) < n:
            data = await asyncio.wait_for(c.read(), HEADER_TIMEOUT_S)
            if not data:
                return None
            c.buf += data
        del c.buf[:n]
        return parts[0], parts[1], parts[2], headers

    @staticmethod
    def early_request_line(c):
        """EARLY*_ requests are dispatched once their request line is complete (headers: {})."""
        nl = c.buf.find(b"\r\n")
        if nl < 0 or c.control or not c.buf.startswith(b"GET " + CHART_PREFIX.encode() + b"EARLY"):
            return None
        parts = bytes(c.buf[:nl]).decode("latin-1").split(" ")
        sym = parts[1][len(CHART_PREFIX):] if len(parts) == 3 else ""
        if not sym.startswith(("EARLY_", "EARLYCLOSE_", "EARLYRST_")):
            return None
        c.early, c.early_seen = True, len(c.buf)
        del c.buf[:nl + 2]
        return parts[0], parts[1], parts[2], {}

    async def serve(self, c):
        args = self.args
        last_done = time.monotonic()
        while not c.closed:
            idle = None
            if args.idle_close_ms and c.nreq > 0 and not args.lazy_idle_close:
                idle = args.idle_close_ms / 1000
            req = await self.read_request(c, idle)
            if req is None:
                return
            method, target, version, headers = req
            path = target.split("?", 1)[0]
            if c.nreq == 0 and path.startswith("/_"):
                self.make_control(c)
            if (args.idle_close_ms and args.lazy_idle_close and c.nreq > 0 and not c.control
                    and time.monotonic() - last_done >= args.idle_close_ms / 1000):
                # As if the server had closed the idle connection just before this request came.
                STATS.lazy_idle_closes += 1
                await c.close()
                return
            c.nreq += 1
            c.must_close = (headers.get("connection", "").lower() == "close" or
                            version != "HTTP/1.1" or
                            (args.close_after and c.nreq % args.close_after == 0 and
                             not c.control))
            keep = await self.dispatch(c, method, target, path, headers)
            last_done = time.monotonic()
            if (args.silent_close_after and not c.control and
                    c.nreq % args.silent_close_after == 0):
                keep = False  # as Apache does at its limit: FIN right behind the response
            if not keep or c.must_close:
                await c.close()
                return

    def make_control(self, c):
        c.control = True
        STATS.connections -= 1
        STATS.intervals.pop(c.id, None)
        STATS.per_conn.pop(c.id, None)
        if c.handshaken:
            STATS.tls_handshakes -= 1
            STATS.tls_resumed -= int(c.resumed)
            ver = c.tls.version() or "?"
            STATS.tls_versions[ver] = STATS.tls_versions.get(ver, 1) - 1

    async def dispatch(self, c, method, target, path, headers):
        if c.control:
            if path == "/_stats":
                return await c.respond(200, _j(STATS.snapshot()).encode())
            if path == "/_reset":
                STATS.reset()
                return await c.respond(200, b'{"reset":true}')
            return await c.respond(404, b"not found", "text/plain")
        STATS.requests_total += 1
        STATS.per_conn[c.id] = STATS.per_conn.get(c.id, 0) + 1
        if method != "GET":
            return await c.respond(405, b"method not allowed", "text/plain",
                                   head_only=method == "HEAD")
        if not path.startswith(CHART_PREFIX):
            return await c.respond(404, b"Not Found", "text/plain;charset=utf-8")
        sym = urllib.parse.unquote(path[len(CHART_PREFIX):])
        STATS.per_symbol[sym] = STATS.per_symbol.get(sym, 0) + 1
        STATS.targets.setdefault(sym, []).append(target)
        del STATS.targets[sym][:-5]
        STATS.headers[sym] = headers
        now = time.monotonic()
        STATS.t0 = STATS.t0 if STATS.t0 is not None else now
        STATS.arrivals.append([sym, round((now - STATS.t0) * 1000, 1)])
        del STATS.arrivals[:-2000]
        c.accept_encoding = headers.get("accept-encoding", "")
        self.hits[sym] = self.hits.get(sym, 0) + 1
        lim = self.limiter
        if lim.active and not lim.admit():
            STATS.limited += 1
            ra = self.args.limit_retry_after
            return await c.respond(429, YAHOO_429, "text/plain;charset=utf-8",
                                   [("Retry-After", str(ra))] if ra is not None else [])
        if self.args.service_ms:
            try:
                await asyncio.sleep(self.args.service_ms / 1000)
            finally:
                if lim.active:
                    lim.release()  # before the answer is written: its reader may send at once
        elif lim.active:
            lim.release()
        return await behaviour(sym, self.args.demo)(c, sym)


def record_types(data):
    types, pos = [], 0
    while pos + 5 <= len(data):
        types.append(data[pos])
        pos += 5 + int.from_bytes(data[pos + 3:pos + 5], "big")
    return types


async def amain(args):
    srv = Server(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.watch_stdin:
        fd = sys.stdin.fileno()

        def on_stdin():
            try:
                if not os.read(fd, 4096):
                    loop.remove_reader(fd)
                    stop.set()
            except OSError:
                loop.remove_reader(fd)
                stop.set()
        loop.add_reader(fd, on_stdin)
    if args.wait_usr1:
        go = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, go.set)
        print("WAITING", flush=True)
        waiter = asyncio.ensure_future(go.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if stop.is_set():
            return
    if args.rcvbuf:
        # Set before listen() so accepted sockets inherit it (and the window scale matches).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        sock.bind(("127.0.0.1", args.port))
        sock.listen(1024)
        server = await asyncio.start_server(srv.on_client, sock=sock)
    else:
        server = await asyncio.start_server(srv.on_client, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    await stop.wait()
    server.close()
    for t in list(srv.tasks):
        t.cancel()
    if srv.tasks:
        await asyncio.wait(list(srv.tasks), timeout=2.0)
    if args.stats_file:
        with open(args.stats_file, "w") as f:
            json.dump(STATS.snapshot(), f, indent=1)
            f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--plain", action="store_true", help="no TLS")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--demo", action="store_true", help="fixed data for the seed's tickers")
    ap.add_argument("--close-after", type=int, default=0, metavar="K",
                    help="Connection: close on every K-th request of a connection")
    ap.add_argument("--silent-close-after", type=int, default=0, metavar="K",
                    help="close after every K-th response of a connection without announcing "
                         "it: the FIN follows the response at once")
    ap.add_argument("--idle-close-ms", type=int, default=0, metavar="MS",
                    help="close kept-alive connections idle this long, without a response")
    ap.add_argument("--lazy-idle-close", action="store_true",
                    help="apply --idle-close-ms only when the next request arrives (forces a "
                         "stale-connection failure on the client)")
    ap.add_argument("--stats-file", help="write the stats JSON here on exit")
    ap.add_argument("--fixtures", help="directory of captured Yahoo bodies served as FIX_<name>")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF")
    ap.add_argument("--tls-max", choices=["1.0", "1.1", "1.2", "1.3"],
                    help="newest TLS version offered (1.0/1.1 also enable the old versions)")
    ap.add_argument("--rcvbuf", type=int, default=0, metavar="BYTES",
                    help="SO_RCVBUF of accepted sockets (small: the unread rest of a big "
                         "request stays in flight)")
    ap.add_argument("--tickets", type=int, metavar="N",
                    help="TLS 1.3 session tickets sent after each handshake (OpenSSL: 2)")
    ap.add_argument("--wait-usr1", action="store_true",
                    help="print WAITING and bind only after SIGUSR1")
    ap.add_argument("--rate-limit", type=float, default=0, metavar="PER_S",
                    help="token bucket: chart requests per second (429 when empty)")
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="token bucket size (default 1)")
    ap.add_argument("--max-inflight", type=int, default=0, metavar="N",
                    help="429 for a chart request arriving while N are being served")
    ap.add_argument("--limit-retry-after", type=int, metavar="SEC",
                    help="Retry-After of the limiters' 429s (default: none)")
    ap.add_argument("--service-ms", type=int, default=0, metavar="MS",
                    help="hold every chart request this long before answering it")
    args = ap.parse_args(argv)
    if not args.plain and not (args.cert and args.key):
        ap.error("--cert and --key are required unless --plain")
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
