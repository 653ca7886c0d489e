#!/usr/bin/python3
"""An oslo.messaging RPC server and client through a broker kill.

  rpc_drill.py CONF MGMT_URL MGMT_USER MGMT_PASSWORD_FILE SECONDS_AFTER

Both are configured only from CONF (a service config). Four client threads call
the server without pause, each call with a 5 s timeout. Once calls flow, the script prints

  BROKER <node> <connections of this process on it> <all of them>

naming the RabbitMQ node that holds most of this process's connections
(from the management API at MGMT_URL), and waits for a line "KILLED" on
stdin. It goes on calling for SECONDS_AFTER seconds and prints

  RESULT {json}

with the longest gap between two successful calls around the kill, the
time from the kill to the first success, and the calls that failed.
Run with Debian's python (/usr/bin/python3).
"""

import base64
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
import warnings

from oslo_config import cfg
import oslo_messaging

warnings.simplefilter("ignore")
if os.environ.get("HASTACK_DRILL_DEBUG"):
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(message)s")

CALL_TIMEOUT = 5  # s; a service waits rpc_response_timeout (60 s) instead
CALLERS = 4


class Endpoint:
    def ping(self, ctxt, seq):
        return seq


def connections_by_node(mgmt, user, password):
    req = urllib.request.Request(mgmt.rstrip("/") + "/api/connections?columns=node,client_properties")
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        conns = json.load(r)
    mine = ":%d:" % os.getpid()
    counts = {}
    for c in conns:
        name = (c.get("client_properties") or {}).get("connection_name", "")
        if mine in name:
            node = c["node"].split("@", 1)[-1]
            counts[node] = counts.get(node, 0) + 1
    return counts


def main():
    conf_file, mgmt, user, pw_file, after = sys.argv[1:6]
    after = float(after)
    with open(pw_file) as f:
        password = f.read().strip()

    # The global CONF, as in a service: oslo.messaging registers some of its
    # options (oslo_messaging_metrics) there only.
    conf = cfg.CONF
    conf(args=[], default_config_files=[conf_file], project="hastack-drill")
    transport = oslo_messaging.get_rpc_transport(conf)
    topic = "hastack_drill"
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(topic=topic, server="drill"),
        [Endpoint()], executor="threading")
    server.start()
    client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic=topic), timeout=CALL_TIMEOUT)

    killed = {"at": None}
    stop = threading.Event()
    lock = threading.Lock()
    successes, failures = [], []

    def caller(worker):
        # Several callers, as a service's workers: a call whose reply is lost
        # with the broker waits for its timeout, while the others show when
        # the service answers again.
        seq = 0
        while not stop.is_set():
            seq += 1
            t0 = time.monotonic()
            try:
                ok = client.call({}, "ping", seq=seq) == seq
                with lock:
                    if ok:
                        successes.append(time.monotonic())
            except Exception as e:
                k = killed["at"]
                with lock:
                    failures.append({"worker": worker,
                                     "sent_after_kill_s": round(t0 - k, 2) if k else None,
                                     "failed_after_s": round(time.monotonic() - t0, 2),
                                     "error": type(e).__name__})

    workers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(CALLERS)]
    for w in workers:
        w.start()
    start = time.monotonic()
    # The management API lists a connection once the broker has emitted its
    # statistics (every 5 s): ask after one full interval, then until ours
    # show.
    time.sleep(6)
    counts = {}
    while not counts and time.monotonic() - start < 30:
        with lock:
            flowing = len(successes) >= 20
        if flowing:
            counts = connections_by_node(mgmt, user, password)
        if not counts:
            time.sleep(1)
    node = max(counts, key=counts.get) if counts else ""
    print("BROKER %s %d %d" % (node, counts.get(node, 0), sum(counts.values())), flush=True)
    for line in sys.stdin:
        if line.strip() == "KILLED":
            killed["at"] = time.monotonic()
            break
    if killed["at"] is None:
        print("RESULT " + json.dumps({"error": "stdin closed before KILLED"}), flush=True)
        return 1
    time.sleep(after)
    stop.set()
    for w in workers:
        w.join(CALL_TIMEOUT + 5)
    calls = len(successes) + len(failures)

    k = killed["at"]
    before = [s for s in successes if s < k]
    after_k = [s for s in successes if s >= k]
    gap = None
    if before and after_k:
        points = [before[-1]] + after_k
        gap = max(b - a for a, b in zip(points, points[1:]))
    result = {
        "callers": CALLERS,
        "calls": calls,
        "successes": len(successes),
        "successes_after_kill": len(after_k),
        "max_gap_s": round(gap, 3) if gap is not None else None,
        "first_success_after_kill_s": round(after_k[0] - k, 3) if after_k else None,
        "failures": failures,
    }
    print("RESULT " + json.dumps(result), flush=True)
    server.stop()
    server.wait()
    transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
