#!/usr/bin/python3
"""qfetch's ClientHello against a recorded Chrome 131 ClientHello, field by field.

    tls_hello.py --build DIR [--certs CERTDIR] [--filter SUBSTR] [--list]

Runs DIR/qfetch against tests/hello_server.py on 127.0.0.1, which reads each ClientHello off the
socket (MSG_PEEK) before any TLS library sees it, then completes the handshake and answers.
Asserts that every field OpenSSL 3.0 lets a client choose equals Chrome's, and that what differs
is exactly the list in DIFFERENCES below (docs/design.md explains each). Reuses cli_fetch.py's
runner: prints `ok name` / `FAIL name: why` and ends with `N passed, M failed`.
"""
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cli_fetch as it  # noqa: E402
from cli_fetch import Fail, check, cert  # noqa: E402
from hello_server import (hello_extent, is_grease, ja3_string, ja4_string,  # noqa: E402
                          parse_hello)

del it.TESTS[:]  # only this file's tests
test = it.test
HELLO_SERVER = os.path.join(HERE, "hello_server.py")
HELLO_WAIT_S = 15

# ---------------------------------------------------------------- the recorded Chrome hello
#
# Chrome 131.0.6778.86 (macOS), as the curl-impersonate project recorded it:
#   https://github.com/lexiforest/curl-impersonate/blob/1f463412ebf175fa77a0647a35f5095cb479fa68/
#   tests/signatures/chrome_131.0.6778.86.yaml
# Its ja3_text gives the extensions in the order of the connection it fingerprinted (Chrome
# permutes them on every connection, since Chrome 110) and its ja3_hash is
# b41f2b186c3c82a6fc1bb88dad6eb562. Its key_share lists 25497 (X25519Kyber768) under a note that
# Chrome 131 replaced Kyber by ML-KEM; Chrome 131 sends X25519MLKEM768, 0x11ec = 4588, as its
# supported_groups there shows (Google Online Security Blog, "A new path for Kyber on the web",
# September 2024). The JA4 of this hello, t13d1516h2_8daaf6152771_02713d6af862, is the one
# FoxIO's JA4+ database lists for Chromium (FoxIO-LLC/ja4, ja4plus-mapping.csv).
# GREASE values (RFC 8701) are drawn afresh by Chrome on every connection: 0x0a0a and 0x1a1a
# stand in for them here. The numbers are IANA code points.
GREASE_A, GREASE_B = 0x0a0a, 0x1a1a
CHROME_131 = {
    "legacy_version": 0x0303,
    "session_id_len": 32,
    "compression": [0],
    "ciphers": [GREASE_A, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
                0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035],
    "extensions": [GREASE_A, 27, 13, 65281, 18, 43, 0, 35, 10, 5, 51, 11, 16, 17513, 65037, 23,
                   45, GREASE_B],
    "sni": "example.com",
    "groups": [GREASE_A, 4588, 29, 23, 24],
    "point_formats": [0],
    "sigalgs": [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
    "alpn": ["h2", "http/1.1"],
    "supported_versions": [GREASE_A, 0x0304, 0x0303],
    "psk_modes": [1],
    "key_share_groups": [GREASE_A, 4588, 29],
    "status_request": 1,
    "cert_compression": [2],   # brotli
}
CHROME_131_JA3_MD5 = "b41f2b186c3c82a6fc1bb88dad6eb562"
CHROME_131_JA3N = ("771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-"
                   "53,0-5-10-11-13-16-18-23-27-35-43-45-51-17513-65037-65281,4588-29-23-24,0")
CHROME_131_JA4 = "t13d1516h2_8daaf6152771_02713d6af862"

# What qfetch's hello cannot share with Chrome's on OpenSSL 3.0 (Debian 12), and why; the table
# in docs/design.md says the same. Each entry maps a field's value to its reason. The tests
# assert that qfetch's hello differs from CHROME_131 by exactly these, beyond GREASE (which
# OpenSSL never sends) and the order of extensions (which OpenSSL fixes and Chrome permutes).
DIFFERENCES = {
    "extensions_only_chrome": {
        17513: "application_settings (ALPS): BoringSSL's own, not in OpenSSL",
        27: "compress_certificate: not in OpenSSL 3.0 (3.2 added it)",
        65037: "encrypted_client_hello (GREASE ECH): not in OpenSSL 3.0",
        65281: "renegotiation_info: OpenSSL signals it with the 0x00ff SCSV cipher instead",
    },
    "ciphers_only_qfetch": {0x00ff: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746)"},
    "groups_only_chrome": {4588: "X25519MLKEM768: not in OpenSSL 3.0 (3.5 added ML-KEM)"},
    "point_formats_only_qfetch": {1: "OpenSSL 3.0 always offers the compressed formats",
                                  2: "OpenSSL 3.0 always offers the compressed formats"},
    "alpn_only_chrome": {},
}


def without_grease(values):
    return [v for v in values if not is_grease(v)]


def expected_qfetch_hello(chrome):
    """Chrome's hello with DIFFERENCES applied: what qfetch's must fingerprint as."""
    d = DIFFERENCES
    h = dict(chrome)
    h["ciphers"] = without_grease(chrome["ciphers"]) + sorted(d["ciphers_only_qfetch"])
    h["extensions"] = [e for e in without_grease(chrome["extensions"])
                       if e not in d["extensions_only_chrome"]]
    h["groups"] = [g for g in without_grease(chrome["groups"]) if g not in d["groups_only_chrome"]]
    h["point_formats"] = chrome["point_formats"] + sorted(d["point_formats_only_qfetch"])
    h["alpn"] = [p for p in chrome["alpn"] if p not in d["alpn_only_chrome"]]
    return h


# ---------------------------------------------------------------- building a raw hello

def _u16s(values):
    return b"".join(v.to_bytes(2, "big") for v in values)


def _vec(data, len_size):
    return len(data).to_bytes(len_size, "big") + data


def _ext_data(etype, h):
    if etype == 0:
        return _vec(b"\x00" + _vec(h["sni"].encode(), 2), 2)
    if etype == 10:
        return _vec(_u16s(h["groups"]), 2)
    if etype == 11:
        return _vec(bytes(h["point_formats"]), 1)
    if etype == 13:
        return _vec(_u16s(h["sigalgs"]), 2)
    if etype == 16:
        return _vec(b"".join(_vec(p.encode(), 1) for p in h["alpn"]), 2)
    if etype == 43:
        return _vec(_u16s(h["supported_versions"]), 1)
    if etype == 45:
        return _vec(bytes(h["psk_modes"]), 1)
    if etype == 51:
        sizes = {4588: 1216, 29: 32}
        return _vec(b"".join(g.to_bytes(2, "big") + _vec(bytes(sizes.get(g, 1)), 2)
                             for g in h["key_share_groups"]), 2)
    if etype == 5:
        return bytes([h["status_request"]]) + bytes(4)
    if etype == 27:
        return _vec(_u16s(h["cert_compression"]), 1)
    if etype == 17513:
        return _vec(_vec(b"h2", 1), 2)
    if etype == 65281:
        return b"\x00"
    return b""


def build_hello(h, split_at=None):
    """The TLS records of a ClientHello with h's fields; split_at cuts the handshake message
    into two records there, as a client may."""
    exts = b"".join(e.to_bytes(2, "big") + _vec(_ext_data(e, h), 2) for e in h["extensions"])
    body = (h["legacy_version"].to_bytes(2, "big") + bytes(32) +
            _vec(bytes(h["session_id_len"]), 1) + _vec(_u16s(h["ciphers"]), 2) +
            _vec(bytes(h["compression"]), 1) + _vec(exts, 2))
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    parts = [msg] if split_at is None else [msg[:split_at], msg[split_at:]]
    return b"".join(b"\x16\x03\x01" + _vec(p, 2) for p in parts)


# ---------------------------------------------------------------- harness

class HelloServer(it.TestServer):
    """tests/hello_server.py in a subprocess; its HELLO records arrive on a queue."""

    def __init__(self, *opts):
        self.plain = False
        self.errf = tempfile.TemporaryFile()
        cmd = [it.PY, HELLO_SERVER, "--watch-stdin", "--cert", cert("server.pem"), "--key",
               cert("server.key")] + list(opts)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf)
        it.CLEANUP.append(self.stop)
        self.port = it.wait_port_line(self.proc, 10)
        if self.port is None:
            self.stop()
            self.errf.seek(0)
            raise Fail("hello_server did not start: %r" % self.errf.read()[-500:])
        self.url = "https://localhost:%d/v8/finance/chart/{}" % self.port
        self.hellos = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            if line.startswith("HELLO "):
                self.hellos.put(json.loads(line[len("HELLO "):]))

    def hello(self):
        try:
            return self.hellos.get(timeout=HELLO_WAIT_S)
        except queue.Empty:
            raise Fail("the server recorded no ClientHello within %d s" % HELLO_WAIT_S)


def fetch(srv, sym, *opts, env=None, expect_price=True):
    """qfetch for one ticker, with no retries: one connection, one hello."""
    r = it.run_raw(["-u", srv.url, "--cacert", cert("ca.pem"), "-f", "json", "--retries", "0"] +
                   list(opts) + ["-t", sym], env=env)
    if expect_price:
        it.expect_rc(r, 0)
        it.expect_ok(r, sym)
    return r


def fresh_cache():
    d = tempfile.mkdtemp(prefix="qfetch-hello-")
    it.CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    return os.path.join(d, "sessions")


def compare_with_chrome(h):
    """Asserts field by field that h (qfetch's parsed hello) is CHROME_131 with DIFFERENCES."""
    c, d = CHROME_131, DIFFERENCES
    for key in ("legacy_version", "session_id_len", "compression", "sigalgs", "psk_modes",
                "status_request"):
        check(h[key] == c[key], "%s: qfetch %r, Chrome %r" % (key, h[key], c[key]))
    check(h["sni"] == "localhost", "no SNI: %r" % h["sni"])
    check(without_grease(h["supported_versions"]) == without_grease(c["supported_versions"]),
          "supported_versions %r: TLS 1.3 and 1.2 only, as Chrome" % h["supported_versions"])
    check(h["ciphers"] == without_grease(h["ciphers"]), "GREASE from OpenSSL?")

    ours = [x for x in h["ciphers"] if x not in d["ciphers_only_qfetch"]]
    check(ours == without_grease(c["ciphers"]),
          "cipher suites (order matters):\n  qfetch %s\n  Chrome %s"
          % (["%04x" % x for x in ours], ["%04x" % x for x in without_grease(c["ciphers"])]))
    extra = set(h["ciphers"]) - set(c["ciphers"])
    check(extra == set(d["ciphers_only_qfetch"]), "extra cipher values %s" % sorted(extra))

    want_groups = [g for g in without_grease(c["groups"]) if g not in d["groups_only_chrome"]]
    check(h["groups"] == want_groups, "groups %r, want %r" % (h["groups"], want_groups))
    want_shares = [g for g in without_grease(c["key_share_groups"])
                   if g not in d["groups_only_chrome"]]
    check(h["key_share_groups"] == want_shares,
          "key shares %r, want %r" % (h["key_share_groups"], want_shares))

    check([p for p in h["point_formats"] if p not in d["point_formats_only_qfetch"]]
          == c["point_formats"] and set(h["point_formats"]) - set(c["point_formats"])
          == set(d["point_formats_only_qfetch"]), "point formats %r" % h["point_formats"])

    want_alpn = [p for p in c["alpn"] if p not in d["alpn_only_chrome"]]
    check(h["alpn"] == want_alpn, "ALPN %r, want %r" % (h["alpn"], want_alpn))

    ext_q, ext_c = set(h["extensions"]), set(without_grease(c["extensions"]))
    check(ext_q - ext_c == set(), "extensions Chrome does not send: %s" % sorted(ext_q - ext_c))
    check(ext_c - ext_q == set(d["extensions_only_chrome"]),
          "extensions missing beyond the documented ones: %s"
          % sorted((ext_c - ext_q) - set(d["extensions_only_chrome"])))
    check(h["cert_compression"] == [], "compress_certificate sent")

    # The same, as the fingerprints see it: Chrome's with the documented differences applied
    # gives qfetch's JA4 and its JA3 with sorted extensions.
    want = expected_qfetch_hello(c)
    check(h["ja4"] == ja4_string(want), "JA4 %s, want %s" % (h["ja4"], ja4_string(want)))
    ja3n = ja3_string(h["legacy_version"], h["ciphers"], sorted(h["extensions"]), h["groups"],
                      h["point_formats"])
    want_ja3n = ja3_string(want["legacy_version"], want["ciphers"], sorted(want["extensions"]),
                           want["groups"], want["point_formats"])
    check(ja3n == want_ja3n, "JA3 (sorted extensions) %s, want %s" % (ja3n, want_ja3n))


# ---------------------------------------------------------------- tests

@test
def tls_hello_fingerprints_match_published():
    """The parser and the JA3/JA4 code give the published fingerprints for the recorded Chrome
    hello (built to bytes with GREASE, also split over two records) and FoxIO's JA4 example."""
    for split in (None, 1, 100):
        raw = build_hello(CHROME_131, split)
        for n in range(len(raw)):
            check(not hello_extent(raw[:n])[0], "a %d-byte prefix counted as whole" % n)
        check(hello_extent(raw) == (True, len(raw)), "whole hello not recognised")
        h = parse_hello(raw)
        for key, want in CHROME_131.items():
            check(h[key] == want, "parsed %s %r, built %r" % (key, h[key], want))
        check(h["ja3_md5"] == CHROME_131_JA3_MD5, "JA3 %s: %s" % (h["ja3_md5"], h["ja3"]))
        ja3n = ja3_string(h["legacy_version"], h["ciphers"], sorted(without_grease(
            h["extensions"])), h["groups"], h["point_formats"])
        check(ja3n == CHROME_131_JA3N, "JA3n %s" % ja3n)
        check(h["ja4"] == CHROME_131_JA4, "JA4 %s, published %s" % (h["ja4"], CHROME_131_JA4))
    # FoxIO-LLC/ja4 technical_details/JA4.md, "Cipher hash" and "Extension hash": an older
    # Chrome hello (padding, no ECH), with and without signature algorithms.
    foxio = dict(CHROME_131, extensions=[0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d,
                                         0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b,
                                         0x000a, 0x0015])
    check(ja4_string(foxio) == "t13d1516h2_8daaf6152771_e5627efa2ab1", ja4_string(foxio))
    check(ja4_string(dict(foxio, sigalgs=[])).endswith("_6d807ffa2a79"),
          ja4_string(dict(foxio, sigalgs=[])))
    check(ja4_string(dict(foxio, alpn=["http/1.1"], extensions=foxio["extensions"][2:]))
          .startswith("t13i1514h1_"), "JA4 part a without SNI and ALPN h1")


@test
def tls_hello_matches_chrome_131():
    """A fresh TLS 1.3 connection: every shapeable field as Chrome 131 has it."""
    srv = HelloServer()
    fetch(srv, "HELLO1", "--no-session-cache")
    h = srv.hello()
    check("error" not in h, "server: %s" % h.get("error"))
    check(h["version"] == "TLSv1.3" and h["alpn_selected"] == "http/1.1" and not h["resumed"],
          "negotiated %s %s resumed=%s" % (h["version"], h["alpn_selected"], h["resumed"]))
    compare_with_chrome(h)
    it.note("JA4 %s, JA3 %s (Chrome 131: %s)" % (h["ja4"], h["ja3_md5"], CHROME_131_JA4))


@test
def tls_hello_tls12_server():
    """A TLS 1.2-only server: the same hello, a verified handshake on one of Chrome's ECDSA
    suites, and a resumed session on the next run from the ticket the first one kept."""
    srv = HelloServer("--tls-max", "1.2")
    cache = fresh_cache()
    fetch(srv, "HELLO12", "--session-cache", cache)
    h = srv.hello()
    check("error" not in h, "server: %s" % h.get("error"))
    check(h["version"] == "TLSv1.2", "negotiated %s" % h["version"])
    ecdsa = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
             "ECDHE-ECDSA-CHACHA20-POLY1305"}
    check(h["cipher"] in ecdsa, "negotiated %s" % h["cipher"])
    compare_with_chrome(h)
    check(h["ext_lengths"]["35"] == 0, "a ticket in the first hello")
    fetch(srv, "HELLO12", "--session-cache", cache)
    h2 = srv.hello()
    check(h2.get("resumed") is True, "second run not resumed: %s" % h2)
    check(h2["ext_lengths"]["35"] > 0, "no session ticket in the second hello")


@test
def tls_hello_tls13_resumption():
    """Resuming from a session cache: pre_shared_key is added, last as RFC 8446 wants, and the
    rest of the hello is the fresh one's."""
    srv = HelloServer()
    cache = fresh_cache()
    fetch(srv, "HELLO13", "--session-cache", cache)
    first = srv.hello()
    fetch(srv, "HELLO13", "--session-cache", cache)
    h = srv.hello()
    check(h.get("resumed") is True, "not resumed: %s" % h)
    check(h["extensions"][-1] == 41, "pre_shared_key not last: %r" % h["extensions"])
    check(h["extensions"][:-1] == first["extensions"] and h["ciphers"] == first["ciphers"] and
          h["groups"] == first["groups"] and h["sigalgs"] == first["sigalgs"],
          "resumed hello %r, fresh %r" % (h["extensions"], first["extensions"]))


@test
def tls_hello_system_policy():
    """Chrome's order never brings back a suite the system's OpenSSL policy removed, and drops
    the policy's suites Chrome does not offer; when none of Chrome's is left for a version,
    the policy's own list for it stays."""
    srv = HelloServer()
    tmp = tempfile.mkdtemp(prefix="qfetch-policy-")
    it.CLEANUP.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    cases = (("TLS_AES_128_CCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
              "DHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384",
              [0x1303, 0xc02c, 0x00ff], True),
             ("TLS_AES_128_CCM_SHA256", "DHE-RSA-AES128-GCM-SHA256",
              [0x1304, 0x009e, 0x00ff], False))
    for i, (suites13, suites12, want, works) in enumerate(cases):
        conf = os.path.join(tmp, "openssl%d.cnf" % i)
        with open(conf, "w") as f:
            f.write("openssl_conf = qf_init\n[qf_init]\nssl_conf = qf_ssl\n[qf_ssl]\n"
                    "system_default = qf_sys\n[qf_sys]\nCiphersuites = %s\nCipherString = %s\n"
                    % (suites13, suites12))
        # The server, which supports no CCM suite, refuses the second case's hello.
        fetch(srv, "POLICY%d" % i, "--no-session-cache", env=dict(os.environ, OPENSSL_CONF=conf),
              expect_price=works)
        h = srv.hello()
        check(h["ciphers"] == want, "policy %s / %s: offered %s, want %s"
              % (suites13, suites12, ["%04x" % x for x in h["ciphers"]],
                 ["%04x" % x for x in want]))


def ocsp_response(tmp):
    """A DER OCSP response of the test CA saying server.pem is good, made with openssl(1)."""
    def ossl(*args):
        p = subprocess.run(["openssl"] + list(args), capture_output=True, timeout=60, cwd=tmp)
        check(p.returncode == 0, "openssl %s: %s" % (args[0], p.stderr.decode()[-300:]))
        return p.stdout.decode()
    serial = ossl("x509", "-in", cert("server.pem"), "-noout", "-serial").strip().split("=")[1]
    subject = ossl("x509", "-in", cert("server.pem"), "-noout", "-subject", "-nameopt",
                   "compat").strip().split("=", 1)[1]
    with open(os.path.join(tmp, "index.txt"), "w") as f:
        f.write("V\t301231235959Z\t\t%s\tunknown\t%s\n" % (serial, subject))
    ossl("ocsp", "-issuer", cert("ca.pem"), "-cert", cert("server.pem"), "-no_nonce",
         "-reqout", "req.der")
    ossl("ocsp", "-index", "index.txt", "-rsigner", cert("ca.pem"), "-rkey", cert("ca.key"),
         "-CA", cert("ca.pem"), "-reqin", "req.der", "-respout", "resp.der", "-ndays", "2")
    return os.path.join(tmp, "resp.der")


@test
def tls_hello_stapled_ocsp_nginx():
    """qfetch asks for a stapled OCSP response as Chrome does; nginx staples one (openssl
    s_client shows it) over TLS 1.2 and 1.3, and the verified handshake and the answer are as
    without it."""
    if not shutil.which("nginx"):
        raise Fail("nginx not installed")
    tmp = tempfile.mkdtemp(prefix="qfetch-ocsp-")
    it.CLEANUP.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    resp = ocsp_response(tmp)
    for proto in ("TLSv1.2", "TLSv1.3"):
        sym = "OCSP" + proto[-1]
        ng = it.Nginx([sym], prefix="qfetch-nginx-ocsp-", http_extra=(
            "    ssl_protocols %s;\n    ssl_stapling on;\n    ssl_stapling_file %s;\n"
            "    ssl_trusted_certificate %s;" % (proto, resp, cert("ca.pem"))))
        try:
            p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % ng.port,
                                "-servername", "localhost", "-status", "-CAfile", cert("ca.pem")],
                               input=b"", capture_output=True, timeout=30)
            out = p.stdout.decode(errors="replace")
            check("OCSP Response Status: successful" in out and "Cert Status: good" in out,
                  "nginx staples nothing over %s: %s" % (proto, out[-600:]))
            r = it.run_raw(["-u", ng.url, "--cacert", cert("ca.pem"), "-f", "json", "-v",
                            "--no-session-cache", "-t", sym])
            it.expect_rc(r, 0)
            it.expect_ok(r, sym)
            check(proto in r.err, "-v does not name %s: %s" % (proto, r.err[-300:]))
        finally:
            ng.stop()


if __name__ == "__main__":
    sys.exit(it.main())
