"""Each service's rendered [database] connection through Debian's oslo.db.

Usage: servicedb_check.py CONF...

For every [database] / [api_database] connection of the given configs (and
nova_cell0, which nova-manage derives from [database] connection), an
oslo.db engine is made as the service makes it, then a table is created,
written, read and dropped. Then, for the first engine, the script prints
"ready" and waits for a line on stdin (the test kills the writer's mariadb
meanwhile); then it queries through the same engine until one query
succeeds (at most 60 s) and reports the attempts. Output: one JSON object
per line. Passwords are never printed.
"""
import json
import sys
import time

from oslo_config import cfg
from oslo_db import options as db_options
from oslo_db.sqlalchemy import engines
import sqlalchemy
from sqlalchemy.engine import url as sa_url


def load(path):
    conf = cfg.ConfigOpts()
    db_options.set_defaults(conf)
    conf.register_opts(db_options.database_opts, group="api_database")
    conf(args=[], default_config_files=[path])
    out = []
    for group in ("database", "api_database"):
        g = getattr(conf, group)
        if g.connection:
            out.append((group, g.connection, g))
    return out


def engine_for(connection, g):
    return engines.create_engine(
        connection,
        max_retries=g.max_retries if g.max_retries >= 0 else 10,
        retry_interval=g.retry_interval,
        connection_recycle_time=g.connection_recycle_time,
        max_pool_size=g.max_pool_size,
        max_overflow=g.max_overflow,
        pool_timeout=g.pool_timeout,
    )


def exercise(engine, name):
    table = "hastack_check_" + name
    with engine.begin() as c:
        c.execute(sqlalchemy.text("CREATE TABLE %s (id INT PRIMARY KEY, v VARCHAR(20))" % table))
        c.execute(sqlalchemy.text("INSERT INTO %s VALUES (1, 'ok')" % table))
    with engine.connect() as c:
        v = c.execute(sqlalchemy.text("SELECT v FROM %s WHERE id = 1" % table)).scalar()
        host = c.execute(sqlalchemy.text("SELECT @@hostname")).scalar()
        db = c.execute(sqlalchemy.text("SELECT DATABASE()")).scalar()
    with engine.begin() as c:
        c.execute(sqlalchemy.text("DROP TABLE %s" % table))
    return v, host, db


def main():
    first = None
    for path in sys.argv[1:]:
        for group, connection, g in load(path):
            u = sa_url.make_url(connection)
            targets = [(group, connection)]
            if group == "database" and u.database == "nova":
                # nova-manage cell_v2 map_cell0 names cell0 after [database].
                targets.append(("cell0", str(u.set(database="nova_cell0").render_as_string(hide_password=False))))
            for what, conn in targets:
                name = sa_url.make_url(conn).database
                rec = {"file": path, "section": what, "user": sa_url.make_url(conn).username, "database": name}
                try:
                    e = engine_for(conn, g)
                    v, host, db = exercise(e, name)
                    rec.update(ok=(v == "ok" and db == name), host=host)
                    if first is None:
                        first = (e, rec)
                except Exception as ex:  # reported, the test fails on it
                    rec.update(ok=False, error="%s: %s" % (type(ex).__name__, str(ex).split("\n")[0]))
                print(json.dumps(rec), flush=True)
    if first is None:
        return
    e, rec = first
    print(json.dumps({"ready": True, "database": rec["database"]}), flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    failures = []
    while time.monotonic() - start < 60:
        try:
            with e.connect() as c:
                host = c.execute(sqlalchemy.text("SELECT @@hostname")).scalar()
                with c.begin():
                    c.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS hastack_after (id INT PRIMARY KEY)"))
                    c.execute(sqlalchemy.text("DROP TABLE hastack_after"))
            print(json.dumps({"reconnected": True, "host": host, "failures": failures,
                              "seconds": round(time.monotonic() - start, 2)}), flush=True)
            return
        except Exception as ex:
            failures.append("%s: %s" % (type(ex).__name__, str(ex).split("\n")[0][:160]))
            time.sleep(0.5)
    print(json.dumps({"reconnected": False, "failures": failures[-5:]}), flush=True)


if __name__ == "__main__":
    main()
