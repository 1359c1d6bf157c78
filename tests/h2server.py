#!/usr/bin/python3
"""A misbehaving HTTP/2 server for tests/http2.py (issue 17), on Debian's python3-h2.

TLS on 127.0.0.1 with the tests' certificate, ALPN "h2" only (a client that does not pick h2
is closed at once), Yahoo-like chart bodies at /v8/finance/chart/SYMBOL. It runs inside the
test process: one daemon thread accepts, one daemon thread per connection (at most max_conns
at once, each living at most conn_life seconds); stop() or the process's exit ends them.

Modes (constructor arguments):
  max_streams=N    SETTINGS_MAX_CONCURRENT_STREAMS N (default 128, as nginx). A stream past N is
                   refused (RST_STREAM REFUSED_STREAM, as nginx does); one opened after the client
                   acknowledged the SETTINGS is also recorded as a breach.
  goaway_after=N   on each connection, when the N-th request arrives: its headers and half its
                   body, then GOAWAY(NO_ERROR, last_stream_id = that stream), the rest of its
                   body, and a close. Streams above it are never answered ("above_goaway"): the
                   client must send them again on a new connection.
  refuse_every=K   every K-th request the server receives gets RST_STREAM REFUSED_STREAM, at most
                   once per path.
  window=N         the server's SETTINGS_INITIAL_WINDOW_SIZE (GETs carry no body, so the client
                   never waits for the server's WINDOW_UPDATE: it only has to accept the value).
  reset_code=C     the code of the resets below (default INTERNAL_ERROR).
  frame_too_large  a BOOM* request gets its headers, then a DATA frame one byte longer than the
                   client's SETTINGS_MAX_FRAME_SIZE, written raw (h2 would refuse to build it).
  conn_error=      "goaway": a BOOM* request gets GOAWAY(PROTOCOL_ERROR, last_stream_id = the
                   highest stream answered) and the connection closes; "garbage": bytes that are
                   no HTTP/2 frame. These faults fire on the first fault_conns connections only.
  ping             every response stops after half its body for a PING and waits (ping_wait s
                   at most) for the ACK before the rest; the ACKs are recorded.
  hold_until=N     answers are held until N streams are open on the whole server at once (or
                   hold_timeout s passed), then everything is answered: shows how many requests
                   a client keeps in flight.
  delay=S          every answer waits S seconds.
  rate=R, burst=B  a token bucket shared by all connections (full at start, R tokens a second,
                   at most B): a chart request that finds no token is answered 429 at once
                   (with `retry-after: 1` when retry_after is true) and takes none ("limited").
Per symbol (upper-case prefix): BIG* bodies of at least big_size bytes (370 KB); RST* reset
before any answer, RSTMID* after the headers and half the body, both with reset_code; HANG* never
answered; SLOW* answered after 0.5 s; BOOM* fires the connection fault of the mode, if any.

Records (read them under .lock, or after the client is done): conns (one Conn per accepted
connection: whether its handshake completed, alpn, the client's SETTINGS frames, connection
WINDOW_UPDATE increments, whether the client acknowledged our SETTINGS, most streams open at
once, breaches, PINGs and ACKs, the client's resets and GOAWAY), requests (one dict per
request: conn, stream, method, path, sym, headers, window (what the server could send at once
when it arrived), body_len, outcome), max_open (most streams open at once on the whole server)
and errors (protocol errors h2 found in what the client sent).

    h2server.py --certs DIR [--mode k=v ...] [--seconds S]   (for curl --http2 or nghttp;
                                                              prints PORT N, then the records)
"""
import argparse
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame, SettingsFrame

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from server import chart_body, price_for  # noqa: E402

BIG_SIZE = 370 * 1000
CHART_PREFIX = "/v8/finance/chart/"
# Headers that RFC 9113 8.2.2 forbids in HTTP/2 (h2 refuses them too, as a protocol error).
CONNECTION_HEADERS = ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
                      "upgrade")

_BODIES = {}


def body_for(sym, big_size=BIG_SIZE):
    """The chart body of sym: a BIG* symbol's grows its bar series to at least big_size bytes."""
    key = (sym, big_size if sym.startswith("BIG") else 0)
    if key not in _BODIES:
        price = repr(price_for(sym))
        if key[1]:
            bars = 3000
            body = chart_body(sym, price, bars=bars)
            while len(body) < big_size:
                bars = bars * big_size // len(body) + 10
                body = chart_body(sym, price, bars=bars)
        else:
            body = chart_body(sym, price)
        _BODIES[key] = body
    return _BODIES[key]


class Conn:
    """What one connection showed; written by its thread under the server's lock."""

    def __init__(self, number):
        self.number = number
        self.tls = False          # the TLS handshake completed
        self.alpn = None
        self.settings = []        # the client's SETTINGS frames: {name: value}
        self.window_updates = []  # the client's connection-level WINDOW_UPDATE increments
        self.settings_acked = False
        self.max_open = 0
        self.breaches = []        # stream ids opened past max_streams after the client's ACK
        self.excess = []          # stream ids refused for exceeding max_streams
        self.pings = {}           # opaque data -> acknowledged (bool)
        self.client_resets = []   # (stream id, error code name)
        self.client_goaway = None  # error code name of the client's GOAWAY
        self.fault = None         # the fault this connection got
        self.end = None           # why the server stopped serving it
        self.closed = False       # its streams' outcomes are final

    def client_setting(self, name):
        """The last value the client sent for a setting name ("ENABLE_PUSH"), or None."""
        val = None
        for s in self.settings:
            val = s.get(name, val)
        return val

    def __repr__(self):
        return ("<conn %d alpn=%s settings=%s wu=%s max_open=%d breaches=%s pings=%s end=%s>"
                % (self.number, self.alpn, self.settings, self.window_updates, self.max_open,
                   self.breaches, list(self.pings.values()), self.end))


def code_name(code):
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


class H2Server:
    def __init__(self, certs, *, max_streams=128, goaway_after=0, refuse_every=0, window=None,
                 reset_code=ErrorCodes.INTERNAL_ERROR, frame_too_large=False, conn_error=None,
                 fault_conns=1, ping=False, ping_wait=5.0, hold_until=0, hold_timeout=5.0,
                 delay=0.0, big_size=BIG_SIZE, max_conns=64, conn_life=120.0, rate=0.0, burst=1,
                 retry_after=False):
        if conn_error not in (None, "goaway", "garbage"):
            raise ValueError("conn_error must be None, 'goaway' or 'garbage'")
        self.max_streams, self.goaway_after, self.refuse_every = max_streams, goaway_after, \
            refuse_every
        self.window, self.reset_code, self.ping, self.ping_wait = window, reset_code, ping, \
            ping_wait
        self.fault = "frame_too_large" if frame_too_large else conn_error
        self.fault_conns, self.hold_until, self.hold_timeout = fault_conns, hold_until, \
            hold_timeout
        self.delay, self.big_size, self.max_conns, self.conn_life = delay, big_size, max_conns, \
            conn_life
        self.rate, self.burst, self.retry_after = float(rate), int(burst), retry_after
        self.tokens, self.t_fill = float(burst), time.monotonic()
        self.lock = threading.Lock()
        self.conns, self.requests, self.errors = [], [], []
        self.max_open = 0
        self.open_now = 0
        self.released = hold_until <= 0
        self.hold_since = None
        self.refused_paths = set()
        self.received = 0
        self.live = 0
        self.stopping = threading.Event()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(certs, "server.pem"),
                                 os.path.join(certs, "server.key"))
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = "https://localhost:%d/v8/finance/chart/{}" % self.port
        self.origin = "https://localhost:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def take_token(self):
        """One token of the bucket, if there is one."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(float(self.burst), self.tokens + (now - self.t_fill) * self.rate)
            self.t_fill = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.live >= self.max_conns:
                    c.close()
                    continue
                self.live += 1
                rec = Conn(len(self.conns) + 1)
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(c, rec), daemon=True).start()

    def _serve(self, c, rec):
        try:
            _Session(self, c, rec).run()
        finally:
            with self.lock:
                self.live -= 1

    # ---- what tests read

    def log(self, **match):
        """The request records whose fields equal match's, in arrival order (a copy)."""
        with self.lock:
            return [dict(r) for r in self.requests
                    if all(r.get(k) == v for k, v in match.items())]

    def answered(self):
        """{symbol: times answered in full}."""
        out = {}
        for r in self.log(outcome="answered"):
            out[r["sym"]] = out.get(r["sym"], 0) + 1
        return out

    def tls_conns(self):
        """The connections whose TLS handshake completed (a client may close spare ones
        before that)."""
        with self.lock:
            return [c for c in self.conns if c.tls]


class _Pending:
    """A response being written: its body, how far, and what happens at the split point."""

    def __init__(self, data, split=None, action=None):
        self.data, self.off, self.split, self.action = data, 0, split, action
        self.waiting = None  # a PING's opaque data, until its ACK (or ping_wait) comes


class _Session:
    """One connection's thread: TLS, then h2 events in, responses out."""

    def __init__(self, srv, sock, rec):
        self.srv, self.sock, self.rec = srv, sock, rec
        self.h2 = None
        self.out = bytearray()
        self.open = {}        # stream id -> its request record, while open
        self.pending = {}     # stream id -> _Pending
        self.timers = []      # (due, stream id)
        self.held = []        # (stream id, delay) waiting for hold_until
        self.goaway_sid = None  # the stream whose answer carries our GOAWAY
        self.goaway_last = None  # last_stream_id of the GOAWAY we sent
        self.nreq = 0
        self.faulted = False
        self.ping_seq = 0
        self.ping_due = {}    # opaque -> deadline
        self.done = False

    # ---- plumbing

    def end(self, why):
        if self.rec.end is None:
            with self.srv.lock:
                self.rec.end = why
        self.done = True

    def flush(self):
        self.out += self.h2.data_to_send()
        if self.out:
            self.sock.settimeout(30)
            self.sock.sendall(bytes(self.out))
            self.out.clear()

    def raw(self, data):
        """Bytes h2 does not know about, in order after what it has queued."""
        self.out += self.h2.data_to_send()
        self.out += data

    def close_stream(self, sid, outcome):
        req = self.open.pop(sid, None)
        self.pending.pop(sid, None)
        if req is not None:
            with self.srv.lock:
                req["outcome"] = outcome
                self.srv.open_now -= 1

    def run(self):
        deadline = time.monotonic() + self.srv.conn_life
        try:
            self.sock.settimeout(10)
            tls = self.srv.ctx.wrap_socket(self.sock, server_side=True,
                                           do_handshake_on_connect=False)
            self.sock = tls
            tls.do_handshake()
            with self.srv.lock:
                self.rec.tls = True
                self.rec.alpn = tls.selected_alpn_protocol()
            if self.rec.alpn != "h2":
                self.end("client did not pick h2")
                return
            self.start_h2()
            while not self.done and not self.srv.stopping.is_set():
                now = time.monotonic()
                if now > deadline:
                    self.end("lifetime over")
                    break
                busy = self.timers or self.held or self.ping_due
                if tls.pending() == 0:
                    r, _, _ = select.select([tls], [], [], 0.05 if busy else 0.5)
                else:
                    r = [tls]
                if r:
                    tls.settimeout(10)
                    data = tls.recv(65536)
                    if not data:
                        self.end("client closed")
                        break
                    self.receive(data)
                if not self.done:
                    self.tick()
                self.flush()
        except (OSError, ssl.SSLError, ValueError) as e:
            self.end("socket: %s" % e)
        finally:
            self.close_all()

    def close_all(self):
        with self.srv.lock:
            for req in self.open.values():
                if req["outcome"] is None:
                    req["outcome"] = "unanswered"
                self.srv.open_now -= 1
            self.open.clear()
            self.rec.closed = True
        # A lingering close, as nginx's: close_notify and FIN, then what the client still sends
        # is read and dropped for a while. Closing with unread bytes would send an RST, which
        # makes the client's kernel drop answers it has received but not yet read.
        try:
            self.sock.setblocking(False)
            if isinstance(self.sock, ssl.SSLSocket):
                self.sock.unwrap()  # sends close_notify; the peer's may never come
        except (OSError, ssl.SSLError, ValueError):
            pass
        try:
            self.sock.shutdown(socket.SHUT_WR)  # an SSLSocket drops its TLS state here
            end = time.monotonic() + 2
            while time.monotonic() < end:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if r and not self.sock.recv(65536):
                    break
        except (OSError, ssl.SSLError, ValueError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def start_h2(self):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=cfg)
        # h2 itself would enforce MAX_CONCURRENT_STREAMS by failing the whole connection; this
        # server advertises it in a SETTINGS frame of its own and enforces it per stream.
        ours = {SettingCodes.MAX_HEADER_LIST_SIZE: 65536}
        if self.srv.window is not None:
            ours[SettingCodes.INITIAL_WINDOW_SIZE] = self.srv.window
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=ours)
        self.h2.initiate_connection()
        self.h2.data_to_send()
        f = SettingsFrame(0)
        for k, v in self.h2.local_settings.items():
            f.settings[k] = v
        f.settings[SettingCodes.MAX_CONCURRENT_STREAMS] = self.srv.max_streams
        self.out += f.serialize()

    # ---- events

    def receive(self, data):
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            with self.srv.lock:
                self.srv.errors.append("conn %d: %s: %s" % (self.rec.number, type(e).__name__,
                                                             e))
            try:
                self.h2.close_connection(ErrorCodes.PROTOCOL_ERROR)
            except h2.exceptions.ProtocolError:
                pass
            self.end("protocol error: %s" % e)
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.on_request(ev.stream_id, ev.headers)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                with self.srv.lock:
                    self.rec.settings.append({SettingCodes(k).name if k in
                                              SettingCodes._value2member_map_ else str(k):
                                              v.new_value
                                              for k, v in ev.changed_settings.items()})
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                with self.srv.lock:
                    self.rec.settings_acked = True
            elif isinstance(ev, h2.events.WindowUpdated):
                if ev.stream_id == 0:
                    with self.srv.lock:
                        self.rec.window_updates.append(ev.delta)
            elif isinstance(ev, h2.events.PingAckReceived):
                key = bytes(ev.ping_data)
                with self.srv.lock:
                    if key in self.rec.pings:
                        self.rec.pings[key] = True
                self.ping_due.pop(key, None)
                for p in self.pending.values():
                    if p.waiting == key:
                        p.waiting = None
            elif isinstance(ev, h2.events.StreamReset):
                with self.srv.lock:
                    self.rec.client_resets.append((ev.stream_id, code_name(ev.error_code)))
                self.close_stream(ev.stream_id, "reset_by_client")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                with self.srv.lock:
                    self.rec.client_goaway = code_name(ev.error_code)
                self.end("client sent GOAWAY %s" % code_name(ev.error_code))
            elif isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)

    def on_request(self, sid, headers):
        hd = dict(headers)
        path = hd.get(":path", "")
        sym = unquote(path[len(CHART_PREFIX):]) if path.startswith(CHART_PREFIX) else None
        req = {"conn": self.rec.number, "stream": sid, "method": hd.get(":method"),
               "path": path, "sym": sym, "headers": list(headers), "outcome": None,
               "window": self.h2.local_flow_control_window(sid), "body_len": None}
        srv = self.srv
        with srv.lock:
            srv.requests.append(req)
            srv.received += 1
            nth = srv.received
        if self.faulted or (self.goaway_last is not None and sid > self.goaway_last):
            req["outcome"] = "above_goaway" if not self.faulted else "after_fault"
            return
        self.open[sid] = req
        with srv.lock:
            srv.open_now += 1
            srv.max_open = max(srv.max_open, srv.open_now)
            self.rec.max_open = max(self.rec.max_open, len(self.open))
            excess = len(self.open) > srv.max_streams
            if excess:
                self.rec.excess.append(sid)
                if self.rec.settings_acked:
                    self.rec.breaches.append(sid)
        if excess:
            return self.reset(sid, ErrorCodes.REFUSED_STREAM, "refused_excess")
        if srv.refuse_every and nth % srv.refuse_every == 0 and path not in srv.refused_paths:
            srv.refused_paths.add(path)
            return self.reset(sid, ErrorCodes.REFUSED_STREAM, "refused")
        if sym is None:
            return self.respond(sid, 404, b'{"error":"not found"}')
        if srv.rate and not srv.take_token():
            req["limited"] = True
            return self.respond(sid, 429, b"Edge: Too Many Requests",
                                extra=[("retry-after", "1")] if srv.retry_after else [])
        self.nreq += 1
        if srv.goaway_after and self.nreq == srv.goaway_after:
            self.goaway_sid = sid
        if sym.startswith("RST") and not sym.startswith("RSTMID"):
            return self.reset(sid, srv.reset_code, "reset")
        if sym.startswith("HANG"):
            return
        if sym.startswith("BOOM") and srv.fault and self.rec.number <= srv.fault_conns:
            return self.fire_fault(sid)
        wait = srv.delay + (0.5 if sym.startswith("SLOW") else 0.0)
        if not srv.released:
            with srv.lock:
                if srv.hold_since is None:
                    srv.hold_since = time.monotonic()
            self.held.append((sid, wait))
        elif wait > 0:
            self.timers.append((time.monotonic() + wait, sid))
        else:
            self.answer(sid)

    def tick(self):
        now = time.monotonic()
        srv = self.srv
        if self.held:
            with srv.lock:
                if not srv.released and (srv.open_now >= srv.hold_until or
                                         now - srv.hold_since > srv.hold_timeout):
                    srv.released = True
            if srv.released:
                held, self.held = self.held, []
                for sid, wait in held:
                    self.timers.append((now + wait, sid))
        due = [t for t in self.timers if t[0] <= now]
        self.timers = [t for t in self.timers if t[0] > now]
        for _, sid in sorted(due):
            if sid in self.open:
                self.answer(sid)
        for key, limit in list(self.ping_due.items()):
            if now > limit:  # no ACK: go on, the record says so
                del self.ping_due[key]
                for p in self.pending.values():
                    if p.waiting == key:
                        p.waiting = None
        self.pump()
        if self.goaway_last is not None and not any(s <= self.goaway_last for s in self.open):
            self.flush()
            self.end("GOAWAY sent, streams below it answered")

    # ---- answers

    def reset(self, sid, code, outcome):
        self.h2.reset_stream(sid, code)
        self.close_stream(sid, outcome)

    def answer(self, sid):
        if self.goaway_last is not None and sid > self.goaway_last:
            return self.close_stream(sid, "above_goaway")  # never answered, as promised
        req = self.open[sid]
        body = body_for(req["sym"], self.srv.big_size)
        self.respond(sid, 200, body, head=req["method"] == "HEAD")

    def respond(self, sid, status, body, head=False, extra=()):
        req = self.open[sid]
        req["body_len"] = len(body)
        headers = [(":status", str(status)), ("content-type", "application/json"),
                   ("content-length", str(len(body))), ("cache-control", "no-store"),
                   ("x-qf-h2", "1")] + list(extra)
        if head:
            self.h2.send_headers(sid, headers, end_stream=True)
            return self.close_stream(sid, "answered")
        self.h2.send_headers(sid, headers)
        sym = req["sym"] or ""
        split = len(body) // 2 if len(body) > 1 else None
        action = None
        if sym.startswith("RSTMID"):
            action = "reset"
        elif sid == self.goaway_sid:
            action = "goaway"
        elif self.srv.ping:
            action = "ping"
        self.pending[sid] = _Pending(body, split if action else None, action)
        self.pump()

    def pump(self):
        """Writes what the client's windows allow; a split point runs its action once."""
        if self.faulted:
            return
        for sid in sorted(self.pending):
            p = self.pending.get(sid)
            while p is not None and p.off < len(p.data) and p.waiting is None:
                limit = p.split if p.split is not None and p.off < p.split else len(p.data)
                n = min(limit - p.off, self.h2.local_flow_control_window(sid),
                        self.h2.max_outbound_frame_size)
                if n <= 0:
                    break
                end = p.off + n == len(p.data)
                self.h2.send_data(sid, p.data[p.off:p.off + n], end_stream=end)
                p.off += n
                if end:
                    self.close_stream(sid, "answered")
                    p = None
                elif p.off == p.split:
                    p = self.split_action(sid, p)

    def split_action(self, sid, p):
        """Returns p, or None when the stream ended."""
        if p.action == "reset":
            self.reset(sid, self.srv.reset_code, "reset_mid")
            return None
        if p.action == "goaway":
            # Written raw: h2 would refuse to send anything after its own GOAWAY, and the
            # point is a stream at or below last_stream_id that completes after it.
            self.goaway_last = sid
            self.raw(GoAwayFrame(0, last_stream_id=sid,
                                 error_code=ErrorCodes.NO_ERROR).serialize())
            return p
        if p.action == "ping":
            self.ping_seq += 1
            key = struct.pack(">II", self.rec.number, self.ping_seq)
            with self.srv.lock:
                self.rec.pings[key] = False
            self.h2.ping(key)
            p.waiting = key
            self.ping_due[key] = time.monotonic() + self.srv.ping_wait
        return p

    def fire_fault(self, sid):
        """The connection fault of the mode, after whatever is answered so far is written."""
        self.pump()
        self.faulted = True
        kind = self.srv.fault
        with self.srv.lock:
            self.rec.fault = kind
        if kind == "frame_too_large":
            n = self.h2.max_outbound_frame_size + 1
            if n > 0xFFFFFF:
                with self.srv.lock:
                    self.srv.errors.append("client's max frame size leaves no bigger frame")
                return
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                       ("content-length", str(n))])
            self.raw(struct.pack(">I", n)[1:] + b"\x00\x00" + struct.pack(">I", sid) +
                     b" " * n)
            self.close_stream(sid, "fault")
            return  # the client answers with its GOAWAY (FRAME_SIZE_ERROR) or closes
        if kind == "goaway":
            answered = [r["stream"] for r in self.srv.log(conn=self.rec.number,
                                                          outcome="answered")]
            self.raw(GoAwayFrame(0, last_stream_id=max(answered, default=0),
                                 error_code=ErrorCodes.PROTOCOL_ERROR,
                                 additional_data=b"qfetch test fault").serialize())
            self.close_stream(sid, "fault")
            self.flush()
            self.end("GOAWAY PROTOCOL_ERROR sent")
            return
        self.raw(b"this is no HTTP/2 frame\r\n" * 4)
        self.close_stream(sid, "fault")


def main():
    ap = argparse.ArgumentParser(description="h2server for manual checks")
    ap.add_argument("--certs", required=True, help="folder with server.pem and server.key")
    ap.add_argument("--mode", action="append", default=[], help="k=v constructor argument")
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    kw = {}
    for m in args.mode:
        k, _, v = m.partition("=")
        for conv in (int, float):
            try:
                kw[k] = conv(v)
                break
            except ValueError:
                pass
        else:
            kw[k] = True if v in ("", "true") else v
    srv = H2Server(args.certs, **kw)
    print("PORT %d" % srv.port, flush=True)
    time.sleep(args.seconds)
    srv.stop()
    for c in srv.conns:
        print(c)
    for r in srv.requests:
        print({k: v for k, v in r.items() if k != "headers"})
    for e in srv.errors:
        print("error:", e)


if __name__ == "__main__":
    main()
