#!/usr/bin/python3
"""oslo.cache through the kill of one memcached.

  cache_drill.py KEYS VICTIM NAME=CONF [NAME=CONF...]

For each NAME, a cache region is configured only from the [cache] section
of CONF, exactly as a service configures it, and KEYS keys are set through
it. The script prints "READY" and waits for "KILLED" on stdin (the memcached
at VICTIM, host:port, was killed). Then, for each NAME, it reads every key
back and reports the fraction missed, calls that raised, and the slowest
call; and reads them again through a region whose server list no longer
has VICTIM (what an operator does next), reporting the fraction found.

  RESULT {json}

Run with Debian's python (/usr/bin/python3).
"""

import json
import sys
import time
import warnings

from oslo_cache import core as cache_core
from oslo_config import cfg

warnings.simplefilter("ignore")


def region_from(conf_file, drop=None):
    conf = cfg.ConfigOpts()
    cache_core.configure(conf)
    conf(args=[], default_config_files=[conf_file], project="hastack-drill")
    if drop:
        servers = [s for s in conf.cache.memcache_servers if s != drop]
        conf.set_override("memcache_servers", servers, group="cache")
    region = cache_core.create_region()
    cache_core.configure_cache_region(conf, region)
    return region


def read_all(region, prefix, n):
    hits = misses = errors = 0
    worst = 0.0
    for i in range(n):
        t0 = time.monotonic()
        try:
            v = region.get("%s-%d" % (prefix, i))
            if v == i:
                hits += 1
            else:
                misses += 1
        except Exception:
            errors += 1
        worst = max(worst, time.monotonic() - t0)
    return hits, misses, errors, worst


def main():
    n = int(sys.argv[1])
    victim = sys.argv[2]
    variants = [a.split("=", 1) for a in sys.argv[3:]]
    regions = {}
    for name, conf_file in variants:
        regions[name] = region_from(conf_file)
        for i in range(n):
            regions[name].set("%s-%d" % (name, i), i)
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "KILLED":
            break
    result = {}
    for name, conf_file in variants:
        hits, misses, errors, worst = read_all(regions[name], name, n)
        # Second pass: the dead server is known by now; calls stay bounded.
        _, _, errors2, worst2 = read_all(regions[name], name, n)
        shrunk = region_from(conf_file, drop=victim)
        found, _, _, _ = read_all(shrunk, name, n)
        result[name] = {
            "keys": n,
            "miss_fraction": round(misses / n, 4),
            "errors": errors + errors2,
            "worst_call_s": round(max(worst, worst2), 4),
            "found_after_list_shrunk": round(found / n, 4),
        }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
