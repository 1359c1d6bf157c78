#!/usr/bin/python3
"""A latency relay on 127.0.0.1: simulates a distant server for benchmarks and tests (this
kernel has no netem).

    relay.py --listen-port 0 --target-port P --rtt-ms 50     (prints "PORT n")

Importable: start_relay(target_port, rtt_ms[, tally]) -> (port, stop) runs it in a thread,
counting the bytes it relays in a Tally when given one; spawn_relay(target_port, rtt_ms) in a
process of its own, for timings; fastopen_sysctl() enables TCP Fast Open machine-wide and
restores the setting on the way out.

The model: a link whose one-way delay is h = RTT/2 in each direction for every byte, the SYN
and the FIN included, with unlimited bandwidth. On loopback the kernel answers the SYN at once,
before the relay even accepts, and a userspace relay cannot hold the SYN-ACK back: the client's
connect() completes at once. So the relay delays everything that crosses it as if the handshake
had taken its round trip. With t0 the moment the client's SYN left (the relay's accept, or the
client's first byte if the kernel received that earlier: both come after the SYN):

    t0        SYN leaves the client
    t0 + h    SYN reaches the server
    t0 + 2h   SYN-ACK reaches the client: its connect would complete, it may send
    t0 + 3h   the client's ACK and the first data it sent reach the server, which accepts

A client byte written at t leaves at max(t, t0 + 2h); a server byte written at t leaves at
max(t, t0 + 3h), since a server cannot write before it accepts; each arrives h after it leaves.
With TCP Fast Open the SYN itself carried the client's first bytes and the server took them:
those leave at t0 and the server may answer from t0 + h; bytes the SYN did not carry still wait
for the SYN-ACK. The relay learns this from the kernel (the saved SYN's length, and TCP_INFO's
flag that the SYN's data was acknowledged; the listener needs net.ipv4.tcp_fastopen flag 2).
"Written at t" is when the kernel received the bytes (SO_TIMESTAMPNS), not when the relay got
round to reading them, so a relay kept waiting for a busy CPU adds nothing but its late wake-up
to deliver.

What a client sees: the first byte of every answer and every end-to-end time (a cold TLS 1.3
fetch: 3 RTT; a resumed one with 0-RTT data in a Fast Open SYN: 1 RTT) are those of the real
link; only its own clock for connect() reads ~0, the round trip then showing in the next phase.
The server sees its connection accepted at t0, which only its own clock can tell. Connection
attempts that the real network would time out (a dead address) are not modelled, nor is a
refused upstream connection's delay: the client sees the close at once.
"""
import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

TCP_FASTOPEN = 23
TCP_SAVE_SYN = 27
TCP_SAVED_SYN = 28
TCPI_OPT_SYN_DATA = 32
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
STAMP_SPACE = socket.CMSG_SPACE(16)
# Past this many connections not yet accepted the kernel drops SYNs, and the client tries again
# a second later (asyncio's servers listen with 100). The kernel caps it at net.core.somaxconn.
BACKLOG = 4096
FASTOPEN_SYSCTL = "/proc/sys/net/ipv4/tcp_fastopen"
# Root's own directory: a state file in /tmp could be a symlink another user planted.
FASTOPEN_STATE = os.path.join("/run" if os.access("/run", os.W_OK) else "/tmp",
                              "qfetch-tcp-fastopen.json")
SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def syn_data_len(sock):
    """How many bytes the connection's SYN carried that the kernel took (TCP Fast Open), or 0.
    The saved SYN (TCP_SAVE_SYN on the listener) gives the length; TCP_INFO says whether the
    SYN-ACK acknowledged it: a server with Fast Open off drops SYN data, which then comes
    again after the handshake."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        syn = sock.getsockopt(socket.IPPROTO_TCP, TCP_SAVED_SYN, 512)
    except OSError:
        return 0
    if len(info) < 6 or not info[5] & TCPI_OPT_SYN_DATA:
        return 0
    if len(syn) < 40 or syn[0] >> 4 != 4:
        return 0
    ihl = (syn[0] & 15) * 4
    total = struct.unpack("!H", syn[2:4])[0]
    doff = (syn[ihl + 12] >> 4) * 4
    return max(0, total - ihl - doff)


def link_socket(sock):
    """Options every relay socket needs. TCP_NODELAY: with Nagle on, a small write waits behind
    an unacknowledged one for the peer's delayed ACK (40 ms, at random). SO_TIMESTAMPNS: each
    read says when the kernel received the bytes."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


async def recv_stamped(loop, sock):
    """The next chunk (b"" at the end or on an error) and when the kernel received it, on the
    loop's clock: a relay that waits for the CPU before reading must not add that wait to the
    link's delay."""
    while True:
        try:
            data, anc, _, _ = sock.recvmsg(65536, STAMP_SPACE)
            break
        except (BlockingIOError, InterruptedError):
            ready = loop.create_future()
            loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
        except OSError:  # a reset travels as a close would
            return b"", loop.time()
    now = loop.time()
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = struct.unpack("qq", raw[:16])
            return data, min(now, now - (time.time() - sec - nsec / 1e9))
    return data, now


class Direction:
    """When one direction's bytes may leave: not before `after` seconds past the SYN, except
    the first `free` bytes (those a Fast Open SYN carried), which left with it. conn["syn"] is
    the relay's accept, lowered to the client's first byte if that came earlier (refine)."""

    def __init__(self, conn, after, free=0, refine=False):
        self.conn, self.after, self.free, self.refine = conn, after, free, refine

    def pieces(self, data, arrived):
        """[(departure, bytes)] for a chunk the kernel received at `arrived`; b"" is the end."""
        if self.refine:
            self.conn["syn"] = min(self.conn["syn"], arrived)
            self.refine = False
        gate = self.conn["syn"] + self.after
        out = []
        if self.free and data:
            head, data = data[:self.free], data[self.free:]
            self.free -= len(head)
            out.append((arrived, head))
        if data or not out:
            out.append((max(arrived, gate), data))
        return out


class Tally:
    """What went through one relay, read from another thread: bytes each way (down: from the
    server), connections accepted and connections over."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.up = self.down = self.opened = self.closed = 0

    def settle(self, timeout=5.0):
        """Waits (bounded) until every connection accepted is over: the counts are then whole."""
        deadline = time.monotonic() + timeout
        time.sleep(0.02)  # a connection still in the accept queue
        while self.closed < self.opened and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.closed == self.opened


async def pump(loop, src, dst, delay_s, direction, tally=None, way=None):
    """Forwards src to dst, each piece arriving delay_s after it may leave (see Direction);
    counts the bytes in tally's attribute way."""
    q = asyncio.Queue()

    async def sender():
        while True:
            due, data = await q.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            await loop.sock_sendall(dst, data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    task = asyncio.ensure_future(sender())
    while True:
        data, arrived = await recv_stamped(loop, src)
        if tally is not None:
            setattr(tally, way, getattr(tally, way) + len(data))
        for leaves, piece in direction.pieces(data, arrived):
            q.put_nowait((leaves + delay_s, piece))
        if not data:
            break
    with contextlib.suppress(OSError):
        await task


async def relay_conn(loop, client, syn, target_port, half, tally=None):
    """relay_link, counted in tally when there is one."""
    if tally is not None:
        tally.opened += 1
    try:
        await relay_link(loop, client, syn, target_port, half, tally)
    finally:
        if tally is not None:
            tally.closed += 1


async def relay_link(loop, client, syn, target_port, half, tally):
    """One connection: client (accepted at syn) to a new one to the target, both ways."""
    with client:
        link_socket(client)
        syn_data = syn_data_len(client)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.setblocking(False)
            try:
                await loop.sock_connect(server, ("127.0.0.1", target_port))
            except OSError:
                return
            link_socket(server)
            conn = {"syn": syn}
            up = Direction(conn, 2 * half, syn_data, refine=True)
            down = Direction(conn, (1 if syn_data else 3) * half)
            await asyncio.gather(pump(loop, client, server, half, up, tally, "up"),
                                 pump(loop, server, client, half, down, tally, "down"))


async def serve(listen_port, target_port, rtt_ms, ready, tally=None):
    """Relays each connection to 127.0.0.1:listen_port (0: any free port) on to target_port
    until cancelled; ready(port, stop) once it listens, stop() callable from any thread."""
    half = rtt_ms / 2000.0
    loop = asyncio.get_running_loop()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # SO_TIMESTAMPNS here too, so that the data of a Fast Open SYN gets its stamp.
    for level, opt, val in ((socket.IPPROTO_TCP, TCP_FASTOPEN, BACKLOG),
                            (socket.IPPROTO_TCP, TCP_SAVE_SYN, 1),
                            (socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)):
        with contextlib.suppress(OSError):
            ls.setsockopt(level, opt, val)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(BACKLOG)
    ls.setblocking(False)
    me = asyncio.current_task()

    def stop():
        with contextlib.suppress(RuntimeError):  # stopped already: the loop is closed
            loop.call_soon_threadsafe(me.cancel)
    ready(ls.getsockname()[1], stop)
    conns = set()
    with ls:
        while True:
            client, _ = await loop.sock_accept(ls)
            # the SYN left no later than now: the kernel completed the handshake before this
            task = asyncio.ensure_future(relay_conn(loop, client, loop.time(), target_port, half,
                                                    tally))
            conns.add(task)
            task.add_done_callback(conns.discard)


def start_relay(target_port, rtt_ms, tally=None):
    """Runs a relay in a daemon thread; returns (port, stop)."""
    box = {}
    ev = threading.Event()

    def ready(port, stop):
        box.update(port=port, stop=stop)
        ev.set()

    def run():
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            asyncio.run(serve(0, target_port, rtt_ms, ready, tally))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    if not ev.wait(10):
        raise RuntimeError("relay did not start")
    return box["port"], box["stop"]


def spawn_relay(target_port, rtt_ms):
    """start_relay's relay in a process of its own; returns (port, stop). A relay thread shares
    its interpreter lock with the caller: a caller busy spawning and reading contenders holds
    a due forward back by up to the lock's switch interval (5 ms), the clock under test."""
    # Its stdin is a pipe from here: when this process ends however it ends, so does the relay.
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--target-port",
                          str(target_port), "--rtt-ms", str(rtt_ms), "--until-stdin-closes"],
                         stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        p.wait()
        raise RuntimeError("relay did not start")

    def stop():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.stdout.close()
        p.stdin.close()
    return int(line.split()[1]), stop


def _alive(holder):
    try:
        os.kill(int(holder.split(":")[0]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        pass
    return True


@contextlib.contextmanager
def fastopen_sysctl(bits=3):
    """Adds bits to net.ipv4.tcp_fastopen (3: client and server Fast Open) for the with-block
    and puts the previous value back however the block ends (a caller that wants signals to
    count turns them into exceptions; they wait while the shared state is being updated).
    Test runs and benches on one machine overlap: they share the saved value through
    FASTOPEN_STATE, and the last one out restores it, so none pulls the setting from under
    another. A holder killed outright leaves its entry; the next one out still restores.
    Yields False, changing nothing, when the sysctl cannot be written (not root)."""
    token = "%d:%s" % (os.getpid(), os.urandom(4).hex())

    @contextlib.contextmanager
    def locked():
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            with open(FASTOPEN_STATE + ".lock", "a") as lk:
                fcntl.flock(lk, fcntl.LOCK_EX)
                try:
                    with open(FASTOPEN_STATE) as f:
                        st = json.load(f)
                except (OSError, ValueError):
                    st = {}
                yield st
                if st.get("holders"):
                    with open(FASTOPEN_STATE + ".tmp", "w") as f:
                        json.dump(st, f)
                    os.replace(FASTOPEN_STATE + ".tmp", FASTOPEN_STATE)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(FASTOPEN_STATE)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def current():
        with open(FASTOPEN_SYSCTL) as f:
            return f.read().strip()

    def write(v):
        with open(FASTOPEN_SYSCTL, "w") as f:
            f.write(v)

    try:
        with locked() as st:
            now = current()
            value = str(int(now) | bits)
            write(value)
            if "saved" not in st or now != st.get("set"):  # no holder, or changed since
                st["saved"] = now
            st["set"] = value
            st["holders"] = [h for h in st.get("holders", []) if _alive(h)] + [token]
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        with locked() as st:
            st["holders"] = [h for h in st.get("holders", []) if h != token and _alive(h)]
            if not st["holders"]:
                with contextlib.suppress(OSError):
                    if current() == st.get("set"):  # untouched by anyone else
                        write(st["saved"])


def measure_rtt(rtt_ms, rounds=10, start=start_relay):
    """Median request/response time through a relay (started by start, start_relay's
    signature) to a local echo server, in ms."""
    es = socket.socket()
    es.bind(("127.0.0.1", 0))
    es.listen(4)

    def echo():
        c, _ = es.accept()
        with c:
            while True:
                d = c.recv(4096)
                if not d:
                    return
                c.sendall(d)

    threading.Thread(target=echo, daemon=True).start()
    port, stop = start(es.getsockname()[1], rtt_ms)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for i in range(rounds):
        t = time.perf_counter()
        s.sendall(b"x")
        s.recv(16)
        times.append((time.perf_counter() - t) * 1000)
    s.close()
    stop()
    es.close()
    times.sort()
    return times[0] if rounds == 1 else times[1:][len(times[1:]) // 2]  # first has the handshake


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--rtt-ms", type=float, default=50)
    ap.add_argument("--until-stdin-closes", action="store_true",
                    help="stop at end of file on stdin (a pipe from the process that started it)")
    a = ap.parse_args()

    def ready(port, stop):
        print("PORT %d" % port, flush=True)
        if a.until_stdin_closes:
            asyncio.get_running_loop().add_reader(0, lambda: os.read(0, 4096) or stop())

    try:
        asyncio.run(serve(a.listen_port, a.target_port, a.rtt_ms, ready))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
