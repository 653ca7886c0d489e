#!/usr/bin/python3
"""The OpenStack view of a drill: real oslo.messaging RPC or oslo.cache
clients, configured only from a rendered service file, recording every call.

  oslo_load.py rpc CONF      # an RPC server and 4 callers (5 s call timeout)
  oslo_load.py cache CONF    # 2 threads: get a key, set it on a miss

It prints "READY" once set up, then one line per call:

  OP <start epoch s> <end epoch s> ok|fail <kind>

(kind "miss" for a cache miss, else the exception's name), until a line
"STOP" or the end of stdin; then "BLOCKED <start epoch s>" for each call still
running, and it exits without waiting for them. Run with Debian's python.
"""

import os
import random
import sys
import threading
import time
import warnings

warnings.simplefilter("ignore")

CALL_TIMEOUT = 5
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
    for i in range(1000):
        k = prefix + str(i)
        region.set(k, k)

    def call():
        k = prefix + str(random.randrange(1000))
        v = region.get(k)
        if v != k:
            region.set(k, k)
            return "miss"
        return None
    return [call] * 2


def main():
    mode, conf_file = sys.argv[1], sys.argv[2]
    calls = rpc(conf_file) if mode == "rpc" else cache(conf_file)
    for i, fn in enumerate(calls):
        threading.Thread(target=record, args=(i, fn), daemon=True).start()
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
