#!/usr/bin/python3
"""Seed inputs for the fuzz targets, in the layouts check.h describes.

    corpus.py --seeds                 rewrite tests/fuzz/corpus/{response,args}/ (committed)
    corpus.py --fixtures DIR OUT      wrap the captures in DIR (../shared/fixtures/yahoo) as
                                      HTTP responses into OUT (under build/: never committed)

Every seed is made here from our own synthetic Yahoo-shaped bodies; the captures are only
read in place at run time.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# Response input (check.h): byte 0 = K piece sizes | flags, byte 1 = more flags (<< 8 here).
EOF_BIT, SMALL_BODY, EXACT_GROW, ONE_TOKEN = 0x10, 0x20, 0x40, 0x80
CAPTURE, HEAD, INFLATE = 0x100, 0x200, 0x800


def room(r):
    """Flags for the split inflation's output buffer of 1 + 37 * r bytes (r < 16)."""
    return r << 12


def coded(kind, body):
    """gzip (zlib's gzip wrapper: no name, mtime 0), zlib-wrapped or raw deflate."""
    wbits = {"gzip": 31, "zlib": 15, "raw": -15}[kind]
    co = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return co.compress(body) + co.flush()


def piece(n):
    """Piece-size byte for n bytes: 1..128 directly, multiples of 256 up to 32 KiB."""
    return n - 1 if n <= 128 else 127 + min(128, max(1, n // 256))


def response_input(resp, sizes=(), flags=0):
    return bytes([len(sizes) | (flags & 0xf0), flags >> 8]) + \
        bytes(piece(n) for n in sizes) + resp


def head(status, reason, headers=()):
    lines = ["HTTP/1.1 %d %s" % (status, reason)] + ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n").encode()


def content_length(status, reason, body, headers=()):
    return head(status, reason, list(headers) + [("Content-Length", str(len(body)))]) + \
        b"\r\n" + body


def chunked(status, reason, body, sizes=(4096,), ext=b"", trailers=b"", headers=()):
    out = head(status, reason, list(headers) + [("Transfer-Encoding", "chunked")]) + b"\r\n"
    off, k = 0, 0
    while off < len(body):
        n = min(sizes[k % len(sizes)], len(body) - off)
        out += b"%x%s\r\n%s\r\n" % (n, ext, body[off:off + n])
        off, k = off + n, k + 1
    return out + b"0" + ext + b"\r\n" + trailers + b"\r\n"


def close_delimited(status, reason, body, headers=()):
    return head(status, reason, list(headers) + [("Connection", "close")]) + b"\r\n" + body


def yahoo_body(symbol, price, currency="USD", bars=0, extra_meta=None):
    """A chart body shaped like Yahoo's v8 answer, with made-up deterministic bars."""
    ts = [1700000000 + 86400 * i for i in range(bars)]
    closes = [round(100 + (i * 37 % 101) / 7.0, 4) for i in range(bars)]
    meta = {"currency": currency, "symbol": symbol, "exchangeName": "NMS",
            "instrumentType": "EQUITY", "firstTradeDate": 345479400,
            "regularMarketTime": 1700086400, "gmtoffset": -18000, "timezone": "EST",
            "exchangeTimezoneName": "America/New_York", "regularMarketPrice": price,
            "chartPreviousClose": 101.5, "priceHint": 2,
            "currentTradingPeriod": {"pre": {"timezone": "EST", "start": 1700038800,
                                             "end": 1700058600, "gmtoffset": -18000}},
            "dataGranularity": "1d", "range": "1mo",
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "max"]}
    meta.update(extra_meta or {})
    result = {"meta": meta, "timestamp": ts,
              "indicators": {"quote": [{"open": closes, "high": closes, "low": closes,
                                        "close": closes, "volume": [1000 + i for i in ts]}],
                             "adjclose": [{"adjclose": closes}]}}
    return json.dumps({"chart": {"result": [result], "error": None}},
                      separators=(",", ":")).encode()


def raw_price_body(price_text, currency='"USD"'):
    """Keeps the price's spelling, which json.dumps would normalise."""
    return (b'{"chart":{"result":[{"meta":{"currency":%s,"symbol":"T","regularMarketPrice":%s}}],'
            b'"error":null}}' % (currency.encode(), price_text.encode()))


def response_seeds():
    ok = [("Content-Type", "application/json;charset=utf-8"),
          ("Cache-Control", "public, max-age=10, stale-while-revalidate=20")]
    small = yahoo_body("AAPL", 189.84)
    bars = yahoo_body("MSFT", 411.22, bars=120)
    not_found = (b'{"chart":{"result":null,"error":{"code":"Not Found",'
                 b'"description":"No data found, symbol may be delisted"}}}')
    s = {}
    s["cl-200-quote"] = response_input(content_length(200, "OK", small, ok))
    s["cl-200-bars-pieces"] = response_input(content_length(200, "OK", bars, ok), (1, 7, 300))
    s["chunked-ext-trailers"] = response_input(
        chunked(200, "OK", small, (5, 64, 1), b";name=value;q=\"x y\"",
                b"X-Trailer: 1\r\nServer-Timing: total;dur=12\r\n", ok), (3, 11))
    s["chunked-big-chunks"] = response_input(chunked(200, "OK", bars, (4096,), headers=ok),
                                             (2048, 17), EXACT_GROW)
    s["close-delimited-eof"] = response_input(close_delimited(200, "OK", small, ok), (9,),
                                              EOF_BIT)
    s["close-delimited-cut"] = response_input(close_delimited(200, "OK", small[:40], ok), (),
                                              EOF_BIT | ONE_TOKEN)
    s["http10-eof"] = response_input(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
                                     + small, (13,), EOF_BIT)
    s["404-yahoo-error"] = response_input(content_length(404, "Not Found", not_found, ok), (2,))
    s["401-finance-error"] = response_input(content_length(
        401, "Unauthorized",
        b'{"finance":{"result":null,"error":{"code":"Unauthorized","description":'
        b'"Invalid Crumb"}}}', ok), (4,))
    s["429-text-retry-after"] = response_input(content_length(
        429, "Too Many Requests", b"Edge: Too Many Requests",
        [("Content-Type", "text/plain"), ("Retry-After", "30")]), (5,))
    s["429-retry-after-date"] = response_input(content_length(
        429, "Too Many Requests", b"Too Many Requests\r\n",
        [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]), (6,))
    s["503-retry-after-huge"] = response_input(content_length(
        503, "Service Unavailable", b"", [("Retry-After", " 99999999999 ")]), (1,))
    s["100-continue-then-200"] = response_input(
        b"HTTP/1.1 100 Continue\r\n\r\n" + content_length(200, "OK", small), (24, 3))
    s["204-no-content"] = response_input(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
    s["304-not-modified"] = response_input(b"HTTP/1.1 304 Not Modified\r\n\r\n", (1,))
    s["cl-0"] = response_input(content_length(200, "OK", b""), (2,))
    s["pipelined-extra"] = response_input(content_length(200, "OK", small, ok) +
                                          b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", (50,))
    s["keep-alive-10"] = response_input(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                                        b"Content-Length: 2\r\n\r\n{}", (8,))
    s["small-body-max"] = response_input(content_length(200, "OK", bars, ok), (100,), SMALL_BODY)
    s["small-body-max-chunked"] = response_input(chunked(200, "OK", bars, (700,)), (64,),
                                                 SMALL_BODY | EXACT_GROW)
    s["bad-chunk-size"] = response_input(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         b"zz\r\nab\r\n0\r\n\r\n", (7,))
    s["cl-and-chunked"] = response_input(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                                         b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    s["status-101"] = response_input(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    s["long-header"] = response_input(head(200, "OK", [("X-Pad", "p" * 3000)]) +
                                      b"Content-Length: 2\r\n\r\n{}", (128,))
    s["folded-ish-header"] = response_input(b"HTTP/1.1 200 OK\r\nRetry-After:\t7\t\r\n"
                                            b"retry-after: 8\r\nContent-Length: 2\r\n\r\n{}")
    for name, text in [("4.275", "4.275"), ("2.675", "2.675"), ("0.005", "0.005"),
                       ("neg-zero", "-0.0"), ("1e25", "1e25"), ("1e26", "1E26"),
                       ("1e400", "1e400"), ("tiny", "4.9e-324"), ("long", "1" * 60 + ".5"),
                       ("exp-frac", "12.5e-1"), ("int", "269"), ("tie-0.125", "0.125"),
                       ("tie-1.375", "1.375"), ("tie-neg", "-2.625e0"), ("tie-0.005", "0.5e-2")]:
        s["price-" + name] = response_input(content_length(200, "OK", raw_price_body(text)))
    s["price-null"] = response_input(content_length(200, "OK", raw_price_body("null")))
    s["price-string"] = response_input(content_length(200, "OK", raw_price_body('"189.84"')))
    s["currency-escapes"] = response_input(content_length(200, "OK", raw_price_body(
        "10.5", r'"\u20ac\ud83d\ude00\n\ud800x"')), (), ONE_TOKEN)
    s["error-escapes"] = response_input(content_length(404, "Not Found", (
        b'{"chart":{"result":null,"error":{"code":"Not\\u0020Found\\t",'
        b'"description":"No d\\u00e4ta \\"found\\" \\/ \\\\ ' + b"x" * 170 + b'"}}}')))
    s["duplicate-keys-decoys"] = response_input(content_length(200, "OK", (
        b'{"regularMarketPrice":1,"chart":{"error":null,"result":[{"meta":{"currency":"EUR",'
        b'"regularMarketPrice":19.948,"regularMarketPrice":20}},'
        b'{"meta":{"regularMarketPrice":3}}]},'
        b'"chart":{"result":[{"meta":{"regularMarketPrice":4}}]}}')))
    s["result-empty"] = response_input(content_length(200, "OK",
                                                      b'{"chart":{"result":[],"error":null}}'))
    s["whitespace-body"] = response_input(content_length(200, "OK", json.dumps(
        json.loads(small), indent=2).encode() + b"\n"), (31,))
    s["deep-64"] = response_input(content_length(200, "OK", b"[" * 64 + b"]" * 64), (16,))
    s["deep-65"] = response_input(content_length(200, "OK", b"[" * 65 + b"]" * 65), (16,))
    s["invalid-json"] = response_input(content_length(200, "OK",
                                                      b'{"chart":{"result":[1,,2],}}'))
    s["capture-headers"] = response_input(content_length(200, "OK", small, ok + [
        ("Set-Cookie", "a=b; Path=/"), ("X-Envoy-Upstream-Service-Time", "12"),
        ("Retry-After", "3")]), (3,), CAPTURE)
    s["capture-empty-values"] = response_input(
        b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Blank: \t \r\nY:z\r\nContent-Length: 2\r\n\r\n{}",
        (), CAPTURE | EXACT_GROW)
    s["capture-after-100"] = response_input(
        b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n" +
        content_length(200, "OK", small, [("X-Final", "2")]), (5, 1), CAPTURE)
    s["capture-chunked-trailers"] = response_input(
        chunked(200, "OK", small, (50,), b";a=b", b"X-Trailer: t\r\n", ok), (40,),
        CAPTURE | EXACT_GROW)
    s["head-content-length"] = response_input(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", (7,), HEAD | CAPTURE)
    s["head-chunked"] = response_input(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", (), HEAD)
    s["head-then-bytes"] = response_input(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc", (9,), HEAD)
    s["top-level-number"] = response_input(close_delimited(200, "OK", b"12.5"), (), EOF_BIT)
    # Server text that must come out clean: C1 CSI, bidi override and isolates, ESC, invalid
    # UTF-8 (stray byte, cut sequence, overlong, surrogate), raw and escaped.
    s["hostile-currency"] = response_input(content_length(200, "OK", raw_price_body(
        "1.5", '"\xc2\x9b2J\xe2\x80\xae\xff"'), ok), (5,))
    s["hostile-description"] = response_input(content_length(
        404, "Not Found", b'{"chart":{"result":null,"error":{"code":"E\\u202e\xc0\xaf",'
        b'"description":"\\u001b[2J\xc2\x9b2J \xe2\x80\xae\xe2\x81\xa6evil\xff\xc3 '
        b'\\u2066x\\u2069 \xed\xa0\x80\xe2\x82A =cmd"}}}', ok), (7,))
    # Malformed bytes become 3-byte U+FFFDs: the clean text outgrows the raw string.
    s["hostile-growth"] = response_input(content_length(
        404, "Not Found", b'{"chart":{"error":{"code":"\xff\xfe\xc2\x85",'
        b'"description":"' + b"\xff\xc3\xa9\x80" * 30 + b'"}}}', ok), (3,))
    gz = [("Content-Encoding", "gzip")]
    s["gzip-cl"] = response_input(content_length(200, "OK", coded("gzip", small), ok + gz),
                                  (7, 3), INFLATE)
    s["gzip-chunked-members"] = response_input(
        chunked(200, "OK", coded("gzip", bars[:900]) + coded("gzip", bars[900:]), (1, 7, 64),
                headers=gz), (40, 5), INFLATE | room(3))
    s["gzip-x-gzip-eof"] = response_input(close_delimited(
        200, "OK", coded("gzip", small), [("Content-Encoding", " X-GZIP ")]), (11,),
        EOF_BIT | INFLATE | room(15))
    s["deflate-zlib"] = response_input(content_length(
        200, "OK", coded("zlib", bars), [("Content-Encoding", "deflate")]), (2, 1),
        INFLATE | room(1))
    s["deflate-raw"] = response_input(content_length(
        200, "OK", coded("raw", small), [("Content-Encoding", "identity, deflate")]), (1,),
        INFLATE | room(2) | CAPTURE)
    s["deflate-raw-long-match"] = response_input(content_length(   # output waits past the input
        200, "OK", coded("raw", b"ab" * 12), [("Content-Encoding", "deflate")]), (), INFLATE)
    bad = bytearray(coded("gzip", small))
    bad[len(bad) // 2] ^= 0x55
    s["gzip-corrupt"] = response_input(content_length(200, "OK", bytes(bad), gz), (9,),
                                       INFLATE | room(4))
    s["gzip-truncated"] = response_input(content_length(
        200, "OK", coded("gzip", small)[:60], gz), (), INFLATE)
    s["deflate-trailing"] = response_input(content_length(
        200, "OK", coded("raw", small) + b"junk", [("Content-Encoding", "deflate")]), (5,),
        INFLATE | room(6))
    s["gzip-bomb"] = response_input(content_length(
        200, "OK", coded("gzip", b"\0" * 300000), gz), (100,), INFLATE | room(15))
    s["gzip-404-error"] = response_input(content_length(
        404, "Not Found", coded("gzip", not_found), gz), (3,), INFLATE | room(8))
    s["gzip-twice"] = response_input(content_length(
        200, "OK", coded("gzip", coded("gzip", small)), gz + gz), (), INFLATE)
    s["coding-br"] = response_input(content_length(
        200, "OK", small, [("Content-Encoding", "br")]), (), INFLATE)
    s["gzip-not-inflated"] = response_input(content_length(200, "OK", coded("gzip", small), gz))
    # Chunk and Transfer-Encoding framing: what RFC 9112 allows, and what it refuses.
    chunked_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    s["chunk-ext-bws"] = response_input(
        chunked(200, "OK", small, (9, 1, 40), b' ; a = b ;c="q\\"v" ;d\t', b"X-T: 1\r\n"),
        (5, 3))
    s["chunk-no-crlf"] = response_input(chunked_head + b"5\r\nhelloXX0\r\n\r\n", (9,))
    s["chunk-size-short"] = response_input(chunked_head + b"3\r\nhello0\r\n\r\n", (2,))
    s["chunk-size-zeros"] = response_input(chunked_head + b"0" * 40 + b"\r\n\r\n", (4,))
    s["chunk-size-16-digits"] = response_input(
        chunked_head + b"0000000000000002\r\n{}\r\n0000000000000000\r\n\r\n", (1,))
    s["te-gzip-chunked"] = response_input(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    s["te-chunked-gzip"] = response_input(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n{}",
        (), EOF_BIT)
    s["te-chunked-tab"] = response_input(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\t\r\nConnection: close\t\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n", (30,), CAPTURE)
    s["cl-tab"] = response_input(b"HTTP/1.1 200 OK\r\nContent-Length:\t2\t\r\n\r\n{}", (20,))
    s["bare-cr"] = response_input(b"HTTP/1.1 200 OK\rX: 1\r\nContent-Length: 2\r\n\r\n{}")
    return s


def args_input(argv, stdin=b""):
    """Layout (check.h): 2-byte stdin length, argv NUL-separated, then stdin."""
    a = b"\0".join(x.encode() if isinstance(x, str) else x for x in argv)
    return struct.pack("<H", len(stdin)) + a + stdin


def args_seeds():
    s = {}
    s["tickers"] = args_input(["-t", "AAPL", "MSFT", "GOOG", "BRK.B", "^GSPC", "EURUSD=X"])
    s["stdin"] = args_input(["-t", "-", "-f", "json"],
                            b"AAPL MSFT\nBRK.B\t^GSPC\r\nEURUSD=X\v\fGS2C.DE  \n")
    s["stdin-twice"] = args_input(["-t", "-", "-"], b"AAPL")
    s["all-options"] = args_input(["--tickers=AAPL", "TSLA", "-f", "csv", "-c", "8", "--timeout",
                                   "2.5", "--connect-timeout=1", "--retries", "3", "-v",
                                   "--stats", "--user-agent", "Mozilla/5.0 (X11)"])
    s["url"] = args_input(["-u", "https://query1.finance.yahoo.com/v8/finance/chart/{}"
                           "?interval=1d", "-t", "AAPL"])
    s["url-ipv6-port"] = args_input(["--url=http://[::1]:8443/q/{}", "-t", "X"])
    s["url-no-path"] = args_input(["-u", "https://host?s={}&x=1", "-t", "X"])
    s["url-bad"] = args_input(["-u", "https://{}/x", "-t", "X"])
    s["url-two"] = args_input(["-u", "https://h/{}/{}", "-t", "X"])
    s["resolve-cacert"] = args_input(["--resolve", "query1.finance.yahoo.com:443:127.0.0.1",
                                      "--resolve=a:1:::1", "--cacert", "/tmp/ca.pem", "-t",
                                      "X"])
    s["python"] = args_input(["-f", "python", "-t", "A'B", 'C"D', "E\\F", "G" * 64,
                              "H" * 65])
    s["csv-quotes"] = args_input(["-f", "csv", "-t", "A,B", '"Q"', "x\r\ny"])
    s["unicode"] = args_input(["-f", "table", "-t", "Ä", "日本", "\u00e9t\u00e9", b"\xff\xfe"])
    s["hostile-text"] = args_input(["-f", "csv", "-t", "-"],
                                   "=1+2 -X @A +B \xc2\x9b2J A\u202eB \u2066C . .. .X.".encode()
                                   + b" \xe2\x82 \xff")
    # Symbols of invalid bytes (3 bytes each once cleaned) beside ones too long for the engine,
    # which the harness also uses for made-up currencies and messages.
    s["long-texts"] = args_input(["-f", "csv", "-t", b"\xff" * 64, b"x" + b"\x89" * 2000,
                                  b"=" + b"\xff" * 900, "AAPL"])
    s["help"] = args_input(["-h"])
    s["bad-int"] = args_input(["-c", "abc", "-t", "X"])
    s["bad-seconds"] = args_input(["--timeout", "-1", "-t", "X"])
    s["no-value"] = args_input(["-t", "X", "-f"])
    s["unknown"] = args_input(["-x"])
    s["bare-symbol"] = args_input(["AAPL"])
    s["empty-t"] = args_input(["-t"])
    s["empty-arg"] = args_input(["-t", "", "X"])
    s["stdin-nul"] = args_input(["-t", "-"], b"AAPL\0MSFT")
    s["latency-options"] = args_input(["-t", "AAPL", "--stats=json", "--repeat", "3",
                                       "--pipeline=4", "--session-cache", "/tmp/s",
                                       "--early-data", "--tcp-fastopen", "--no-progress"])
    s["no-session-cache"] = args_input(["--no-session-cache", "--session-cache=", "-t", "X"])
    s["bad-repeat"] = args_input(["--repeat", "0", "-t", "X"])
    return s


def write_dir(d, seeds):
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def fixture_seeds(fixdir, max_len):
    """The captures wrapped as responses: raw bodies in Content-Length, chunked and
    close-delimited framing; recordings re-serialised compactly (as SOURCES.md describes) with
    their recorded headers. Inputs over max_len are left out (and named on stdout)."""
    seeds, skipped = {}, []
    status_of = {"200": (200, "OK"), "401": (401, "Unauthorized"), "404": (404, "Not Found"),
                 "429": (429, "Too Many Requests")}
    for sub in ("", "errors"):
        d = os.path.join(fixdir, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if not os.path.isfile(path) or not (name.endswith(".json") or name.endswith(".txt")):
                continue
            with open(path, "rb") as f:
                data = f.read()
            status, reason = status_of.get(name[:3], (200, "OK")) if sub else (200, "OK")
            headers = [("Content-Type", "application/json;charset=utf-8")]
            if name.endswith(".recording.json"):
                rec = json.loads(data)["response"]
                data = json.dumps(rec["bodyJson"], separators=(",", ":"),
                                  ensure_ascii=False).encode()
                status, reason = rec.get("status", 200), rec.get("statusText") or "OK"
                headers = [(k, v) for k, v in rec.get("headers", {}).items()
                           if k.lower() not in ("content-length", "transfer-encoding",
                                                "content-encoding", "connection")]
            elif name.endswith(".txt"):
                headers = [("Content-Type", "text/plain"), ("Retry-After", "5")]
            base = "fixture-" + (sub + "-" if sub else "") + name
            variants = {
                base + "-cl": response_input(content_length(status, reason, data, headers),
                                             (1536, 17), CAPTURE),
                base + "-chunked": response_input(
                    chunked(status, reason, data, (1000, 7), b";ext=1", b"X-T: 1\r\n", headers),
                    (300, 5), EXACT_GROW),
                base + "-eof": response_input(close_delimited(status, reason, data, headers),
                                              (512,), EOF_BIT),
            }
            for k, v in variants.items():
                if len(v) > max_len:
                    skipped.append("%s (%d bytes)" % (k, len(v)))
                else:
                    seeds[k] = v
    return seeds, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", action="store_true")
    ap.add_argument("--fixtures", nargs=2, metavar=("DIR", "OUT"))
    ap.add_argument("--max-len", type=int, default=65536)
    a = ap.parse_args()
    if a.seeds:
        write_dir(os.path.join(HERE, "corpus", "response"), response_seeds())
        write_dir(os.path.join(HERE, "corpus", "args"), args_seeds())
    if a.fixtures:
        seeds, skipped = fixture_seeds(a.fixtures[0], a.max_len)
        write_dir(a.fixtures[1], seeds)
        for s in skipped:
            print("corpus.py: left out %s: over -max_len" % s)
    if not a.seeds and not a.fixtures:
        ap.error("nothing to do: --seeds and/or --fixtures")


if __name__ == "__main__":
    sys.exit(main())
