#!/usr/bin/python3
"""A latency relay on 127.0.0.1: simulates a distant server for benchmarks (this kernel has no
netem). Every chunk is held RTT/2 in each direction, and a connection's first client bytes are
held one extra RTT for the TCP handshake, unless the SYN itself carried data (TCP Fast Open),
which the relay sees in the saved SYN's IP length.

    relay.py --listen-port 0 --target-port P --rtt-ms 50     (prints "PORT n")

Importable: start_relay(target_port, rtt_ms) -> (port, stop) runs it in a thread.
"""
import argparse
import asyncio
import socket
import struct
import sys
import threading
import time

TCP_FASTOPEN = 23
TCP_SAVE_SYN = 27
TCP_SAVED_SYN = 28


def syn_had_data(sock):
    """True when the connection's SYN carried payload (TFO). Needs TCP_SAVE_SYN on the
    listener; False when the kernel keeps no SYN."""
    try:
        syn = sock.getsockopt(socket.IPPROTO_TCP, TCP_SAVED_SYN, 512)
    except OSError:
        return False
    if len(syn) < 40 or syn[0] >> 4 != 4:
        return False
    ihl = (syn[0] & 15) * 4
    total = struct.unpack("!H", syn[2:4])[0]
    doff = (syn[ihl + 12] >> 4) * 4
    return total - ihl - doff > 0


async def pump(reader, writer, delay_s, not_before):
    """Forwards chunks, each no earlier than arrival + delay (and not before not_before[0])."""
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()

    async def sender():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = max(due, not_before[0]) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    task = asyncio.ensure_future(sender())
    try:
        while True:
            data = await reader.read(65536)
            q.put_nowait((loop.time() + delay_s, data or None))
            if not data:
                break
    except (ConnectionError, OSError):
        q.put_nowait((0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass


async def serve(listen_port, target_port, rtt_ms, ready):
    half = rtt_ms / 2000.0
    loop = asyncio.get_running_loop()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for opt, val in ((TCP_FASTOPEN, 64), (TCP_SAVE_SYN, 1)):
        try:
            ls.setsockopt(socket.IPPROTO_TCP, opt, val)
        except OSError:
            pass
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(512)
    ls.setblocking(False)

    async def handle(creader, cwriter):
        t0 = loop.time()
        tfo = syn_had_data(cwriter.get_extra_info("socket"))
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cwriter.close()
            return
        # the client could only send after SYN/SYN-ACK: one RTT, unless its SYN held data
        up_gate = [t0 + (0 if tfo else 2 * half)]
        down_gate = [0.0]
        try:
            await asyncio.gather(pump(creader, swriter, half, up_gate),
                                 pump(sreader, cwriter, half, down_gate))
        except asyncio.CancelledError:
            pass
        for w in (cwriter, swriter):
            w.close()

    srv = await asyncio.start_server(handle, sock=ls)
    ready(ls.getsockname()[1], loop, srv)
    async with srv:
        await srv.serve_forever()


def start_relay(target_port, rtt_ms):
    """Runs a relay in a daemon thread; returns (port, stop)."""
    box = {}
    ev = threading.Event()

    def ready(port, loop, srv):
        box.update(port=port, loop=loop, srv=srv)
        ev.set()

    def run():
        try:
            asyncio.run(serve(0, target_port, rtt_ms, ready))
        except (asyncio.CancelledError, RuntimeError):
            pass

    th = threading.Thread(target=run, daemon=True)
    th.start()
    if not ev.wait(10):
        raise RuntimeError("relay did not start")

    def stop():
        box["loop"].call_soon_threadsafe(box["srv"].close)

    return box["port"], stop


def measure_rtt(rtt_ms, rounds=10):
    """Median request/response time through a relay to a local echo server, in ms."""
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
    port, stop = start_relay(es.getsockname()[1], rtt_ms)
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
    a = ap.parse_args()

    def ready(port, loop, srv):
        print("PORT %d" % port, flush=True)

    try:
        asyncio.run(serve(a.listen_port, a.target_port, a.rtt_ms, ready))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
