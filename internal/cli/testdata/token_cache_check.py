"""What keystonemiddleware puts in memcached, with a rendered config.

Usage: token_cache_check.py CONF

keystonemiddleware's auth_token filter is built from the [keystone_authtoken]
section of CONF (Debian's keystonemiddleware), a validated token is cached
through it, read back through it, then every memcached of the config is
read raw (python-memcached, the client keystonemiddleware uses): the token
id and the token data must not appear there in the clear. Prints one JSON
object. Secrets are never printed.
"""
import json
import sys
import uuid
from urllib.parse import unquote

import memcache
from oslo_config import cfg
from keystonemiddleware import auth_token


def main():
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[sys.argv[1]], project="nova")
    app = auth_token.AuthProtocol(lambda env, start: None, {"oslo_config_config": conf})
    group = conf.keystone_authtoken
    cache = app._token_cache
    cache.initialize({})
    token = "gAAAAA" + uuid.uuid4().hex + uuid.uuid4().hex
    marker = "hastack-marker-" + uuid.uuid4().hex
    data = {"token": {"user": {"name": marker}, "expires_at": "2099-01-01T00:00:00Z"}}
    cache.set(token, data)
    back = cache.get(token)
    servers = group.memcached_servers
    client = memcache.Client(servers)
    raw_hits = []
    plain = []
    for s in client.servers:
        if not s.connect():
            continue
        # Every key the server holds (memcached 1.6's LRU crawler; keys
        # come URL-encoded).
        s.send_cmd("lru_crawler metadump all")
        # Lines end with a bare newline, and the client splits on CRLF.
        text = b""
        while True:
            chunk = s.readline()
            text += chunk + b"\n"
            if not chunk or chunk.endswith(b"END"):
                break
        keys = [unquote(l.split(" ")[0][4:]) for l in text.decode().split("\n") if l.startswith("key=")]
        for k in keys:
            s.send_cmd("get " + k)
            head = s.readline()
            if not head.startswith(b"VALUE"):
                continue
            n = int(head.split()[3])
            value = s.recv(n + 2)[:-2]
            s.readline()  # END
            raw_hits.append(k)
            if token in k or token.encode() in value or marker.encode() in value:
                plain.append(k)
    print(json.dumps({
        "strategy": group.memcache_security_strategy,
        "roundtrip": back == data,
        "entries": len(raw_hits),
        "plaintext_entries": len(plain),
        "token_in_key": any(token in k for k in raw_hits),
    }))


if __name__ == "__main__":
    main()
