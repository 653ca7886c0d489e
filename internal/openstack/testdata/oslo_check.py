#!/usr/bin/python3
"""Load service configs with oslo.config and the libraries' own options.

Run with Debian's python (/usr/bin/python3) and its packages:
python3-oslo.messaging, python3-oslo.cache, python3-oslo.config,
python3-oslo.db, python3-keystonemiddleware.

  oslo_check.py catalogue        the option names the libraries register,
                                 per group, with their deprecated names
  oslo_check.py check FILE...    for each file: options in the groups the
                                 libraries own that no library registers,
                                 values oslo.config cannot convert, and what
                                 the messaging and cache layers make of it

Output: one JSON document on stdout.
"""

import json
import sys
import warnings

from keystoneauth1 import loading as ks_loading
from keystonemiddleware import opts as ksm_opts
from oslo_cache import core as cache_core
from oslo_config import cfg
from oslo_db import options as db_options
import oslo_messaging
from oslo_messaging._drivers import base as drv_base
from oslo_messaging import opts as om_opts

warnings.simplefilter("ignore")

# The groups hastack writes, and who registers their options.
GROUPS = ("DEFAULT", "oslo_messaging_rabbit", "oslo_messaging_notifications",
          "cache", "database", "api_database", "keystone_authtoken")


def library_opts():
    """(group, opts) the libraries register, as the services get them."""
    out = []
    for group, opts in om_opts.list_opts():
        out.append((group or "DEFAULT", list(opts)))
    # The rabbit driver registers the connection pool options in its own
    # group (list_opts shows them under DEFAULT).
    out.append(("oslo_messaging_rabbit", list(drv_base.base_opts)))
    for group, opts in cache_core._opts.list_opts():
        out.append((group, list(opts)))
    out.append(("database", list(db_options.database_opts)))
    # nova registers the same oslo.db options for [api_database].
    out.append(("api_database", list(db_options.database_opts)))
    for group, opts in ksm_opts.list_auth_token_opts():
        out.append((group, list(opts)))
    # The password plugin's options: services write them in the same
    # section. Not required here: only the names matter.
    plugin = [o._to_oslo_opt() for o in ks_loading.get_plugin_options("password")]
    for opt in plugin:
        opt.required = False
    out.append(("keystone_authtoken", plugin))
    return out


def build_conf():
    conf = cfg.ConfigOpts()
    for group, opts in library_opts():
        for opt in opts:
            try:
                conf.register_opt(opt, group=None if group == "DEFAULT" else group)
            except cfg.DuplicateOptError:
                pass  # the same option from two lists (e.g. password plugin)
    return conf


def accepted_names():
    """group -> {name: 'current' | 'deprecated' | 'deprecated-for-removal'}"""
    names = {}
    for group, opts in library_opts():
        g = names.setdefault(group, {})
        for opt in opts:
            g[opt.dest] = "deprecated-for-removal" if opt.deprecated_for_removal else "current"
            for d in opt.deprecated_opts:
                dgroup = (d.group or group)
                dgroup = dgroup if dgroup == "DEFAULT" else dgroup.lower()
                if dgroup == group and d.name:
                    g.setdefault(d.name.replace("-", "_"), "deprecated")
    return names


def catalogue():
    names = accepted_names()
    return {g: names.get(g, {}) for g in GROUPS}


def check(path):
    result = {"file": path, "unknown": [], "errors": []}
    sections = {}
    try:
        cfg.ConfigParser(path, sections).parse()
    except Exception as e:  # a parse error is a finding, not a crash
        result["errors"].append("parse: %s" % e)
        return result
    names = accepted_names()
    for section, opts in sections.items():
        group = section if section == "DEFAULT" else section.lower()
        if group not in GROUPS:
            result["unknown"].append("[%s]" % section)
            continue
        for key in opts:
            if key not in names.get(group, {}):
                result["unknown"].append("[%s] %s" % (group, key))

    conf = build_conf()
    conf(args=[], default_config_files=[path], project="hastack-check")
    for section, opts in sections.items():
        group = section if section == "DEFAULT" else section.lower()
        for key in opts:
            try:
                node = conf if group == "DEFAULT" else conf[group]
                getattr(node, key)
            except (cfg.NoSuchOptError, AttributeError):
                pass  # reported above as unknown
            except Exception as e:
                result["errors"].append("[%s] %s: %s" % (group, key, e))

    if conf.transport_url:
        url = oslo_messaging.TransportURL.parse(conf, conf.transport_url)
        result["rabbit_hosts"] = ["%s:%s" % (h.hostname, h.port) for h in url.hosts]
    result["rabbit"] = {k: getattr(conf.oslo_messaging_rabbit, k) for k in (
        "rabbit_retry_interval", "rabbit_retry_backoff", "rabbit_interval_max",
        "heartbeat_timeout_threshold", "heartbeat_rate", "rabbit_quorum_queue",
        "rabbit_ha_queues", "amqp_durable_queues", "kombu_failover_strategy")}
    if conf.cache.enabled:
        args = cache_core._build_cache_config(conf)
        result["cache"] = {k.split(".")[-1]: v for k, v in args.items()
                           if isinstance(v, (str, int, float, bool, list))}
        # The backend is built from these arguments exactly as a service
        # builds it; pymemcache does not connect until the first call.
        region = cache_core.create_region()
        cache_core.configure_cache_region(conf, region)
        result["cache_backend_class"] = type(region.backend).__name__
    if "database" in conf and conf.database.connection:
        result["database"] = {
            "recycle": conf.database.connection_recycle_time,
            "max_retries": conf.database.max_retries,
            "retry_interval": conf.database.retry_interval,
        }
    return result


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "catalogue":
        json.dump(catalogue(), sys.stdout, sort_keys=True)
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        json.dump([check(p) for p in sys.argv[2:]], sys.stdout, sort_keys=True, default=str)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
