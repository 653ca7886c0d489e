#!/usr/bin/python3
"""The OpenStack view of a drill: real oslo.messaging RPC or oslo.cache
clients, configured only from a rendered service file, recording every call.

  oslo_load.py rpc CONF      # an RPC server and 4 callers (5 s call timeout)
  oslo_load.py cache CONF    # 2 threads: get each key in turn, set it on a miss

It prints "KEYS <n>" (cache: how many keys it set), "READY" once set up, then
one line per call:

  OP <start epoch s> <end epoch s> ok|fail <kind> [<key>]

(kind "miss" for a cache miss, with the key's number, else the exception's
name), until a line
"STOP" or the end of stdin; then "BLOCKED <start epoch s>" for each call still
running, and it exits without waiting for them. Run with Debian's python.
"""

import os
import sys
import threading
import time
import warnings

warnings.simplefilter("ignore")

CALL_TIMEOUT = 5
KEYS = 300
out_lock = threading.Lock()
running = {}
stop = threading.Event()


def emit(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def record(worker, fn):
    while not stop.is_set():
        t0 = time.time()
        running[worker] = t0
        try:
            kind = fn()
            outcome = "ok"
        except Exception as e:  # every failure is data
            outcome, kind = "fail", type(e).__name__
        running.pop(worker, None)
        if stop.is_set():
            return
        emit("OP %.6f %.6f %s %s" % (t0, time.time(), outcome, kind or "-"))
        time.sleep(0.02)


def record_keys(worker, fn, start):
    # The cache: each worker reads every key in turn (from its own offset),
    # so every key is read once a pass: a miss names a key that was lost,
    # and when misses stop, every key is served again.
    i = start
    while not stop.is_set():
        t0 = time.time()
        running[worker] = t0
        try:
            kind = fn(i)
            outcome = "ok"
        except Exception as e:
            outcome, kind = "fail", type(e).__name__
        running.pop(worker, None)
        if stop.is_set():
            return
        if kind == "miss":
            emit("OP %.6f %.6f ok miss %d" % (t0, time.time(), i))
        else:
            emit("OP %.6f %.6f %s %s" % (t0, time.time(), outcome, kind or "-"))
        i = (i + 1) % KEYS
        time.sleep(0.02)


def rpc(conf_file):
    from oslo_config import cfg
    import oslo_messaging

    class Endpoint:
        def ping(self, ctxt, seq):
            return seq

    conf = cfg.CONF
    conf(args=[], default_config_files=[conf_file], project="hastack-drill")
    transport = oslo_messaging.get_rpc_transport(conf)
    # A fixed topic: the drill deletes its queues afterwards by name.
    topic = "hastack_drill_rpc"
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(topic=topic, server="drill"),
        [Endpoint()], executor="threading")
    server.start()
    client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic=topic), timeout=CALL_TIMEOUT)
    seq = [0]

    def call():
        seq[0] += 1
        s = seq[0]
        if client.call({}, "ping", seq=s) != s:
            raise ValueError("wrong reply")
        return None
    return [call] * 4


def cache(conf_file):
    from oslo_cache import core as cache_core
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    cache_core.configure(conf)
    conf(args=[], default_config_files=[conf_file], project="hastack-drill")
    region = cache_core.create_region()
    cache_core.configure_cache_region(conf, region)
    prefix = "drill-%d-" % os.getpid()
    # Every key is set before the baseline: a miss then means a lost key.
    for i in range(KEYS):
        k = prefix + str(i)
        region.set(k, k)
    emit("KEYS %d" % KEYS)

    def call(i):
        k = prefix + str(i)
        v = region.get(k)
        if v != k:
            region.set(k, k)
            return "miss"
        return None
    return call


def main():
    mode, conf_file = sys.argv[1], sys.argv[2]
    if mode == "rpc":
        for i, fn in enumerate(rpc(conf_file)):
            threading.Thread(target=record, args=(i, fn), daemon=True).start()
    else:
        fn = cache(conf_file)
        for i in range(2):
            threading.Thread(target=record_keys, args=(i, fn, i * KEYS // 2), daemon=True).start()
    emit("READY")
    for line in sys.stdin:
        if line.strip() == "STOP":
            break
    stop.set()
    for t0 in list(running.values()):
        emit("BLOCKED %.6f" % t0)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
