#!/usr/bin/env python3
"""Drives the side-by-side benchmark (run through bench/peers/run.sh).

Every server is started here on a loopback port and stopped afterwards; load comes from wrk.
Each figure is the median of RUNS runs with min-max. Results go to docs/benchmarks/peers.md
(tables) and docs/benchmarks/peers.svg (chart), plus peers.json with the raw numbers.
"""

import argparse
import contextlib
import datetime
import glob
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUICK = os.environ.get("QUICK") == "1"
RUNS = 5
SECONDS = 2 if QUICK else 3
CONNS = 16
THREADS = 2
OUT = os.environ.get("DAVREPL_BENCH_OUT") or os.path.join(ROOT, "docs", "benchmarks")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    """A server process on a port; stopped on exit of the with-block."""

    def __init__(self, name, argv, port, env=None, cwd=None):
        self.name, self.port = name, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env, cwd=cwd, start_new_session=True)
        wait_port(port)

    def rss_kb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            os.killpg(self.proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)


def request(base, method, path, body=None, headers=None, auth=None, timeout=600):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = dict(headers or {})
    if auth:
        h["Authorization"] = auth
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def wrk(url, script, seconds=SECONDS, conns=CONNS):
    return wrk_counted(url, script, seconds, conns)[0]


def wrk_counted(url, script, seconds=SECONDS, conns=CONNS):
    """Requests per second and the number of requests completed."""
    out = subprocess.run(["wrk", "-t", str(THREADS), "-c", str(conns), "-d", f"{seconds}s",
                          "-s", script, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad:
        raise RuntimeError(f"{url}: {bad.group(1)} non-2xx responses\n{out}")
    if errors and re.search(r"(read|write|timeout) [1-9]", errors.group(1)):
        print(f"   note: {url}: socket errors {errors.group(1)}")
    return rps, int(re.search(r"(\d+) requests in", out).group(1))


def tree_cpu(pid):
    """CPU seconds (user, system) used so far by process `pid` and every process below it
    (Apache's workers; a davrepl or dav-server process is one process). Processes that ended
    are not counted: the servers here keep their workers for the whole run."""
    parents, times = {}, {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        p = int(stat.split("/")[2])
        parents[p] = int(fields[1])
        times[p] = (int(fields[11]), int(fields[12]))
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for p, (u, s) in times.items():
        q = p
        while q and q != pid:
            q = parents.get(q, 0)
        if q == pid:
            user, system = user + u, system + s
    return user / tick, system / tick


def wrk_on(srv, url, script):
    """`wrk` against a server, with the server's CPU per request in microseconds (user,
    system) measured around the run."""
    pids = getattr(srv, "cpu_pids", [srv.proc.pid])
    before = [tree_cpu(p) for p in pids]
    rps, n = wrk_counted(url, script)
    after = [tree_cpu(p) for p in pids]
    user = sum(a[0] - b[0] for a, b in zip(after, before))
    system = sum(a[1] - b[1] for a, b in zip(after, before))
    return rps, user / n * 1e6, system / n * 1e6


def lua(tmp, name, method, body_bytes=0, headers=None, body=None, fresh=False):
    """A wrk script; `fresh`: every request goes to a new URL (the script's path, then the
    wrk thread's number and a counter), so PUT creates instead of overwriting."""
    path = os.path.join(tmp, name + ".lua")
    lines = [f'wrk.method = "{method}"']
    if fresh:
        lines += [
            "local threads = 0",
            "function setup(thread) thread:set('tid', threads); threads = threads + 1 end",
            "function init(args) n = 0 end",
            "function request() n = n + 1; "
            "return wrk.format(nil, wrk.path .. '-' .. tid .. '-' .. n) end",
        ]
    if body is not None:
        lines.append(f"wrk.body = [[{body}]]")
    elif body_bytes:
        lines.append(f'wrk.body = string.rep("x", {body_bytes})')
    for k, v in (headers or {}).items():
        lines.append(f'wrk.headers["{k}"] = "{v}"')
    # wrk: a 207 counts as 2xx; anything else >= 300 is reported as non-2xx.
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def figure(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "runs": samples}


# ---------------------------------------------------------------- servers


def davrepl(name, store, tmp):
    port = free_port()
    argv = [os.path.join(ROOT, "target/release/davrepl-server"), "--listen",
            f"127.0.0.1:{port}", "--store", store]
    return Server(name, argv, port, env=dict(os.environ, DAVREPL_LOG="warn"))


def dav_server(tmp):
    root = os.path.join(tmp, "dav-server-root")
    os.makedirs(root, exist_ok=True)
    port = free_port()
    argv = [os.path.join(ROOT, "target/peers/release/dav-server-peer"), f"127.0.0.1:{port}",
            f"localfs:{root}"]
    return Server("dav-server (localfs)", argv, port)


def dav_server_mem(tmp):
    port = free_port()
    argv = [os.path.join(ROOT, "target/peers/release/dav-server-peer"), f"127.0.0.1:{port}",
            "memfs"]
    return Server("dav-server (MemFs)", argv, port)


CEILING = "bare axum (bytes in memory)"
CEILING_H = "bare axum, davrepl's headers"
CEILINGS = (CEILING, CEILING_H)


def ceiling(tmp):
    """Not a WebDAV server: the HTTP stack's own ceiling for the same GET and PUT requests."""
    port = free_port()
    argv = [os.path.join(ROOT, "target/release/overhead"), "ceiling", f"127.0.0.1:{port}"]
    return Server(CEILING, argv, port)


def ceiling_headers(tmp):
    """The ceiling answering with the response headers davrepl sends (fixed strings of the same
    length): what those bytes cost the HTTP stack and the client, without making them."""
    port = free_port()
    argv = [os.path.join(ROOT, "target/release/overhead"), "ceiling-headers", f"127.0.0.1:{port}"]
    return Server(CEILING_H, argv, port)


def sqlite_raw(tmp):
    """One-row INSERT transactions per second on SQLite (WAL, synchronous=FULL)."""
    out = subprocess.run([os.path.join(ROOT, "target/release/sqlite_raw"),
                          os.path.join(tmp, "sqlite-raw"), str(SECONDS)],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"inserts/s ([\d.]+)", out).group(1))


PG = "davrepl (PostgreSQL)"
PGBENCH = "pgbench -N (TPS, same cluster)"


class PgCluster:
    """A throwaway PostgreSQL cluster with fsync and synchronous commit on (the project's
    `throwaway-cluster` example), removed on exit; `url` is a fresh database on it."""

    def __init__(self):
        exe = os.path.join(ROOT, "target/release/examples/throwaway-cluster")
        self.proc = subprocess.Popen([exe, "--durable"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            self.proc.wait()
            raise RuntimeError("the throwaway PostgreSQL cluster did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def with_cluster_cpu(srv, cluster):
    """The PostgreSQL column's CPU per request counts the cluster's backends with the node."""
    srv.cpu_pids = [srv.proc.pid, cluster.proc.pid]
    return srv


def pgbench_tps(url):
    """PostgreSQL's own benchmark with as many clients as wrk has connections: `pgbench -N`
    (its simple-update script: one UPDATE, one SELECT and one INSERT per transaction, no
    contended branch rows) and `pgbench -S` (one SELECT by primary key per transaction: the
    most one-statement reads 16 clients get from this cluster on this machine)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    exe = found[-1] if found else "pgbench"
    subprocess.run([exe, "-i", "-q", "-s", "10", url], check=True, capture_output=True)
    out = {}
    for mode in ("-N", "-S"):
        runs = []
        for _ in range(RUNS):
            text = subprocess.run([exe, mode, "-c", str(CONNS), "-j", str(THREADS), "-T",
                                   str(SECONDS), url], check=True, capture_output=True,
                                  text=True).stdout
            runs.append(float(re.search(r"tps = ([\d.]+)", text).group(1)))
        out[mode] = figure(runs)
    return out["-N"], out["-S"]


def apache(tmp):
    d = os.path.join(tmp, "apache")
    www, lock = os.path.join(d, "www"), os.path.join(d, "lock")
    os.makedirs(www, exist_ok=True)
    os.makedirs(lock, exist_ok=True)
    port = free_port()
    mods = "/usr/lib/apache2/modules"
    conf = f"""
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule dav_module {mods}/mod_dav.so
LoadModule dav_fs_module {mods}/mod_dav_fs.so
Listen 127.0.0.1:{port}
ServerName localhost
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
Mutex file:{d}
User www-data
Group www-data
KeepAlive On
MaxKeepAliveRequests 0
DocumentRoot {www}
DavLockDB {lock}/DavLock
<Directory {www}>
    Dav On
    Require all granted
</Directory>
"""
    path = os.path.join(d, "httpd.conf")
    with open(path, "w") as f:
        f.write(conf)
    subprocess.run(["chown", "-R", "www-data:www-data", www, lock], check=True)
    return Server("Apache httpd mod_dav", ["apache2", "-f", path, "-DFOREGROUND"], port)


# ---------------------------------------------------------------- plain WebDAV


def prepare_plain(srv, members):
    for p in ["/b/", "/b/coll/"]:
        s, _ = request(srv.base, "MKCOL", p)
        assert s in (201, 405), (srv.name, p, s)
    assert request(srv.base, "PUT", "/b/small.bin", b"x" * 1024)[0] in (200, 201, 204)
    assert request(srv.base, "PUT", "/b/big.bin", b"x" * (1 << 20))[0] in (200, 201, 204)
    u = urllib.parse.urlparse(srv.base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    for i in range(members):
        c.request("PUT", f"/b/coll/m{i:05}.txt", body=b"hello")
        r = c.getresponse()
        r.read()
        assert r.status in (200, 201, 204), (srv.name, r.status)
    c.close()


PROPFIND_BODY = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'


def plain_rows(tmp):
    return [
        ("GET 1 KiB", "/b/small.bin", lua(tmp, "get", "GET")),
        ("GET 1 MiB", "/b/big.bin", lua(tmp, "get", "GET")),
        ("PUT 1 KiB", "/b/put-small", lua(tmp, "put1k", "PUT", 1024, fresh=True)),
        ("PUT 1 MiB", "/b/put-big.bin", lua(tmp, "put1m", "PUT", 1 << 20)),
        ("PROPFIND Depth 1, 1,000 members", "/b/coll/",
         lua(tmp, "propfind", "PROPFIND", headers={"Depth": "1", "Content-Type": "text/xml"},
             body=PROPFIND_BODY)),
    ]


def run_plain(tmp, results):
    starters = [
        lambda: ceiling(tmp),
        lambda: ceiling_headers(tmp),
        lambda: davrepl("davrepl (memory)", "memory", tmp),
        lambda: davrepl("davrepl (SQLite)", f"sqlite:{tmp}/davrepl-sqlite/store.db", tmp),
        lambda: dav_server_mem(tmp),
        lambda: dav_server(tmp),
        lambda: apache(tmp),
    ]
    cluster = None
    try:
        cluster = PgCluster()
        starters.insert(3, lambda: with_cluster_cpu(davrepl(PG, cluster.url, tmp), cluster))
    except (OSError, RuntimeError) as e:
        print(f"==> no PostgreSQL column: {e}")
        results["notes"].append(f"No PostgreSQL column in this run: {e}.")
    table = {}
    with contextlib.ExitStack() as stack:
        if cluster:
            stack.enter_context(cluster)
        run_servers(tmp, starters, table)
        if cluster:
            pg, select = pgbench_tps(cluster.url)
            print(f"==> {PGBENCH}: {pg['median']:.0f}; pgbench -S: {select['median']:.0f}")
            results["pgbench"] = pg
            results["pgbench_select"] = select
    results["plain"] = table
    raw = figure([sqlite_raw(tmp) for _ in range(RUNS)])
    print(f"==> raw SQLite one-row INSERT transactions: {raw['median']:.0f}/s")
    results["sqlite_raw"] = raw


def run_servers(tmp, starters, table):
    """Every server runs at once (an idle one costs nothing), and each row's runs are
    interleaved: run 1 of every server, then run 2 in another order, and so on. A drift of the
    shared machine then hits every server alike, where one server after another gave the
    earlier ones a different machine than the later ones (the memory store's GET 1 KiB ratio
    to the ceiling was 0.754-0.759 run that way, 0.80-0.84 in alternating A/Bs)."""
    with contextlib.ExitStack() as stack:
        servers = []
        for start in starters:
            srv = stack.enter_context(start())
            print(f"==> plain WebDAV: {srv.name}: preparing")
            prepare_plain(srv, 1000)
            servers.append(srv)
        for row, path, script in plain_rows(tmp):
            runs, cpu = {}, {}
            for i in range(RUNS):
                k = i % len(servers)
                order = servers[k:] + servers[:k]
                if i % 2:
                    order.reverse()
                for srv in order:
                    if srv.name in CEILINGS and row.startswith("PROPFIND"):
                        continue
                    if row.startswith("PUT"):
                        # What the previous run left dirty in the page cache (Apache and
                        # dav-server never sync) is written out now, not in the middle of the
                        # next server's run, where it would slow that server's fsyncs.
                        os.sync()
                    rps, user, system = wrk_on(srv, srv.base + path, script)
                    runs.setdefault(srv.name, []).append(rps)
                    cpu.setdefault(srv.name, []).append((user, system))
            for name, samples in runs.items():
                f = figure(samples)
                f["cpu_us"] = {"user": statistics.median(u for u, _ in cpu[name]),
                               "system": statistics.median(s for _, s in cpu[name])}
                table.setdefault(row, {})[name] = f
                print(f"   {row}: {name}: {f['median']:.0f}/s")


def run_overhead(tmp, results):
    """Bare and layered run side by side, their runs interleaved (bare, layered, bare, ...),
    so drift of the shared machine hits both alike; the loss is computed per pair of runs."""
    script = lua(tmp, "hello", "GET")
    runs = {"bare": [], "layered": []}
    servers = []
    for mode in runs:
        port = free_port()
        argv = [os.path.join(ROOT, "target/release/overhead"), mode, f"127.0.0.1:{port}"]
        servers.append(Server(mode, argv, port))
    try:
        for i in range(max(RUNS, 5)):
            order = servers if i % 2 == 0 else servers[::-1]
            for srv in order:
                runs[srv.name].append(wrk(srv.base + "/hello", script))
    finally:
        for srv in servers:
            srv.__exit__(None, None, None)
    table = {mode: figure(v) for mode, v in runs.items()}
    table["pair_loss"] = figure([1 - l / b for b, l in zip(runs["bare"], runs["layered"])])
    print(f"==> layer overhead: bare {table['bare']['median']:.0f}/s, layered "
          f"{table['layered']['median']:.0f}/s, loss per pair {table['pair_loss']['median'] * 100:.1f}%")
    results["overhead"] = table


# ---------------------------------------------------------------- sync cost


def run_davrepl_sync(sizes, results):
    delta_runs = 50 if QUICK else 200
    out = subprocess.run([os.path.join(ROOT, "target/release/manifest"), "--sizes",
                          ",".join(map(str, sizes)), "--runs", "10" if QUICK else "20",
                          "--delta-runs", str(delta_runs)],
                         capture_output=True, text=True, check=True).stdout
    rows, reports = {}, {}
    fig = r"([\d.]+) \(([\d.]+)–([\d.]+)\)"
    for line in out.splitlines():
        m = re.match(rf"\| (\d+) \| {fig} \| \d+ \| {fig} \| {fig} \|", line)
        if m:
            v = [float(x) for x in m.groups()[1:]]
            # Runs per figure as the `manifest` binary takes them (deltas after 10 untimed
            # ones; its full syncs: at most 10, 3 at a million members).
            k = delta_runs
            full_n = 3 if int(m.group(1)) >= 1_000_000 else 10
            rows[int(m.group(1))] = {"delta_ms": {"median": v[0], "min": v[1], "max": v[2], "n": k},
                                     "full_ms": {"median": v[3], "min": v[4], "max": v[5], "n": full_n}}
            reports[int(m.group(1))] = {"delta_ms": {"median": v[6], "min": v[7], "max": v[8], "n": k}}
    mem = re.search(r"first sync of (\d+) members: .*?([\d.]+) MB streamed in ([\d.]+) s; RSS idle ([\d.]+) MB, peak ([\d.]+) MB", out)
    results["sync"] = {"davrepl manifest (memory)": rows,
                       "davrepl sync-collection (memory)": reports}
    if mem:
        results["memory"] = {"members": int(mem.group(1)), "mb": float(mem.group(2)),
                             "seconds": float(mem.group(3)), "idle_mb": float(mem.group(4)),
                             "peak_mb": float(mem.group(5))}
    print(out)


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//davrepl bench//EN
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20260101T000000Z
DTSTART:20260101T100000Z
DURATION:PT1H
SUMMARY:event {uid}
END:VEVENT
END:VCALENDAR
"""

SYNC_REPORT = """<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:"><D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>
<D:prop><D:getetag/></D:prop></D:sync-collection>"""

AUTH = "Basic YmVuY2g6YmVuY2g="  # bench:bench (Radicale with auth type none takes any)


def fill_ics(folder, n):
    """n events written straight into a peer's storage folder: the same files its PUT writes."""
    for i in range(n):
        with open(os.path.join(folder, f"e{i:07}.ics"), "w") as f:
            f.write(ICS.format(uid=f"e{i:07}"))


def peer_sync(name, srv, path, n, budget, auth=None):
    """Full sync and the delta after 10 changes made through HTTP, on a calendar of n events
    at `path` of a running peer; no delta when the full sync is over the budget (s)."""
    hdr = {"Depth": "1", "Content-Type": "text/xml"}

    def report(token, timeout=600):
        t = time.perf_counter()
        s, body = request(srv.base, "REPORT", path, SYNC_REPORT.format(token=token), hdr, auth, timeout)
        return s, body, (time.perf_counter() - t) * 1000

    try:
        s, body, first = report("", timeout=budget)
    except TimeoutError:
        return {"full_ms": None, "delta_ms": None, "rss_kb": srv.rss_kb(), "over_s": budget}
    if s != 207:
        raise RuntimeError(f"{name} sync-collection: {s} {body[:300]}")
    if first / 1000 > budget:
        return {"full_ms": figure([first]), "delta_ms": None, "rss_kb": srv.rss_kb()}
    fulls = [first] + ([report("")[2] for _ in range(2)] if first < 20_000 else [])
    token = re.search(rb"<[^>]*sync-token>([^<]+)<", body).group(1).decode()
    for i in range(10):
        uid = f"e{i * max(n // 10, 1):07}"
        s, _ = request(srv.base, "PUT", f"{path}{uid}.ics", ICS.format(uid=uid).replace("event", "changed"),
                       {"Content-Type": "text/calendar"}, auth)
        assert s in (201, 204), s
    deltas = []
    for _ in range(10 if n < 100_000 else 3):
        s, body, ms = report(token)
        assert s == 207, body[:300]
        rows = len(re.findall(rb"<(?:\w+:)?response>", body))
        if rows != 10:
            raise RuntimeError(f"{name} delta at {n}: {rows} rows, expected the 10 changed")
        deltas.append(ms)
    return {"full_ms": figure(fulls), "delta_ms": figure(deltas), "rows": rows,
            "rss_kb": srv.rss_kb()}


def radicale_sync(radicale, tmp, n, budget):
    store = os.path.join(tmp, f"radicale-{n}")
    cal = os.path.join(store, "collection-root", "bench", "cal")
    os.makedirs(cal)
    with open(os.path.join(store, "collection-root", "bench", ".Radicale.props"), "w") as f:
        f.write("{}")
    with open(os.path.join(cal, ".Radicale.props"), "w") as f:
        json.dump({"tag": "VCALENDAR"}, f)
    fill_ics(cal, n)
    port = free_port()
    argv = [radicale, "--server-hosts", f"127.0.0.1:{port}", "--storage-filesystem-folder", store,
            "--auth-type", "none", "--rights-type", "owner_only", "--logging-level", "error"]
    with Server("Radicale", argv, port) as srv:
        return peer_sync("Radicale", srv, "/bench/cal/", n, budget, AUTH)


def xandikos_sync(xandikos, tmp, n, budget):
    """Xandikos keeps a calendar as a git repository: the events are written into its work
    tree and committed in one commit (what n PUTs would leave, in one step)."""
    root = os.path.join(tmp, f"xandikos-{n}")
    os.makedirs(root)
    subprocess.run([xandikos, "create-collection", "-d", root, "--type", "calendar", "--name", "cal"],
                   check=True, capture_output=True)
    cal = os.path.join(root, "cal")
    fill_ics(cal, n)
    git = ["git", "-C", cal, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(git + ["add", "-A"], check=True, capture_output=True)
    subprocess.run(git + ["commit", "-q", "-m", f"{n} events"], check=True, capture_output=True)
    port = free_port()
    argv = [xandikos, "serve", "-d", root, "-l", "127.0.0.1", "-p", str(port)]
    with Server("Xandikos", argv, port) as srv:
        return peer_sync("Xandikos", srv, "/cal/", n, budget)


def run_peer_sync(name, measure, sizes, results):
    table = {}
    for n in sizes:
        print(f"==> {name} sync-collection at {n} events")
        t = time.time()
        r = measure(n)
        table[n] = r
        full = r["full_ms"] and round(r["full_ms"]["median"], 1)
        print(f"   {r.get('delta_ms') and round(r['delta_ms']['median'], 2)} ms delta, "
              f"{full or 'over budget'} ms full ({time.time() - t:.0f} s)")
        if r["delta_ms"] is None:
            print("   full sync over the time budget: larger sizes skipped")
            break
    results["sync"][name] = table


# ---------------------------------------------------------------- report


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, {platform.platform()}"


def fmt(f, digits=0):
    """A figure as "median (min–max)", or "value (1 run)" when there was only one sample."""
    if len(f.get("runs", [])) == 1:
        return f"{f['median']:,.{digits}f} (1 run)"
    n = f.get("n") or len(f.get("runs", [])) or RUNS
    return f"{f['median']:,.{digits}f} ({f['min']:,.{digits}f}–{f['max']:,.{digits}f}, {n} runs)"


TARGETS = [
    ("PUT 1 KiB", PG, PGBENCH, 0.5),
    ("GET 1 KiB", PG, "davrepl (SQLite)", 0.5),
    ("GET 1 KiB", "davrepl (memory)", CEILING, 0.8),
    ("GET 1 KiB", "davrepl (memory)", "dav-server (MemFs)", 1.2),
    ("PUT 1 KiB", "davrepl (memory)", "dav-server (MemFs)", 1.2),
    ("GET 1 MiB", "davrepl (memory)", CEILING, 0.95),
    ("GET 1 KiB", "davrepl (SQLite)", "Apache httpd mod_dav", 1.5),
    ("GET 1 MiB", "davrepl (SQLite)", "Apache httpd mod_dav", 1.2),
    ("PUT 1 KiB", "davrepl (SQLite)", "Apache httpd mod_dav", 1.5),
    ("PUT 1 MiB", "davrepl (SQLite)", "Apache httpd mod_dav", 1.0),
]


# What bounds each target when it is missed: what the profiles and samples taken while working
# on issue #14 showed (docs/benchmarks/peers.md repeats it under the targets table).
BOUNDS = {
    ("PUT 1 KiB", PG): (
        "a write is two round trips and six statements: BEGIN; its counters; its row and "
        "ancestor locks (one statement); the rows it reads (one statement); its changes as one "
        "`WITH` statement; COMMIT — against pgbench's five. The backends take three quarters "
        "of the machine's CPU under this load, so work per statement bounds it; "
        "`pg_stat_statements` per PUT: the `WITH` flush 0.14 ms, the counters read 0.036 ms "
        "(its quota sum over the usage slots), the locks 0.034 ms, the read 0.029 ms. No write "
        "waits for the counters row (schema 6), and writers share WAL flushes (group commit)."),
    ("GET 1 KiB", PG): (
        "a repeated GET is answered from the node's hot-item cache once a check that began "
        "after it (`SELECT pg_current_snapshot()`, one statement for every GET waiting at the "
        "time) shows nothing committed since the item was read; the node then does the memory "
        "store's work plus a wait for that check, and the backends answer the checks. The "
        "first GET after any commit in the cluster reads the database (one statement, an index "
        "lookup of the path with its content). An alternating A/B (`STORE=postgres://… bash "
        "bench/profile/ab-get.sh`, `wrk -t2 -c16 -d3s`, 2026-12-05) gave 27,048 GET/s before "
        "the cache and 54,947 with it. What is left is the node's own CPU: `perf stat -e "
        "task-clock` on the server during `wrk -t2 -c16` put a cached PostgreSQL GET at 22.4 µs "
        "against the SQLite store's 12.2 µs, and 2 context switches per GET against 0.75 — "
        "each GET parks until its check ends and is woken to finish, where SQLite's cache "
        "answers in one poll; the checks themselves are few (one per ~55 GETs at `wrk -c32`, from "
        "`pg_stat_database`). Letting a second check begin while one is in flight made it 8% "
        "slower (more checks, each waking its readers). The request-path work of 2026-12-05 "
        "(header scan, stack-formatted tags) made the SQLite store's GET cheaper, which moved "
        "this ratio from 0.539× to 0.49×; the runs since gave 0.492× to 0.535×. Any work "
        "taken off the shared request path raises the SQLite store's rate as much as the "
        "PostgreSQL store's, so this ratio stays near the line: the node-side wait, not the "
        "shared path, is what a PostgreSQL GET spends more on. The CPU table below counts the "
        "cluster's backends with the PostgreSQL node."),
    ("GET 1 KiB", "davrepl (memory)"): (
        "davrepl's GET decodes and checks the path, asks the authorizer, reads the conditional "
        "headers, runs the engine's point read and answers ETag, ResourceTag, Last-Modified "
        "and the stored-content safety headers. callgrind (`MEMBERS=1000 bash "
        "bench/profile/callgrind-get.sh`: 20,000 keep-alive GETs with 1,000 items beside the "
        "one read, 2026-12-06): 22.1k instructions per request against the ceiling's 16.2k "
        "(24.6k on 2026-12-05). hyper's side (connection, parse, encode) is the same in both, "
        "about 11k; the difference is the service: davrepl's whole WebDAV GET is 9.0k "
        "instructions where the ceiling's axum route is 2.9k. Of those 9.0k, making the "
        "response headers is about 3.5k (ETag, ResourceTag and Last-Modified are each "
        "formatted, checked and copied into a header value, about 500 instructions apiece), "
        "the engine's read 2.1k, the path 0.7k, and about 2k moving futures and results into "
        "place. dav-server's MemFs answers from a map behind the same hyper with fewer headers "
        "and no tags; its rate moved between 0.71× and 0.81× the ceiling in the runs of "
        "2026-12-06, so 1.2× it asked for 0.86× to 0.97× the ceiling, where davrepl ran at "
        "0.78× to 0.89×. What sets the rate is the size of the response head, not the layer's "
        "work: davrepl sends 425 bytes of head, MemFs 213, the ceiling 118, and the wrk client "
        "parses them on the same two cores. In alternating A/Bs (`bash "
        "bench/profile/ab-get.sh target/release/davrepl-server "
        "target/release/overhead:ceiling-headers 10`, both orders, 2026-12-06) davrepl ran at "
        "0.985× and 0.997× a bare route sending the same headers as fixed strings, and those "
        "headers alone took the ceiling to 0.917× and 0.929×. ResourceTag is on every GET by "
        "the protocol (spec §0, item 7), and the safety headers keep stored content inert in a "
        "browser. The CPU table below shows the rest: davrepl spends less user time per GET "
        "than MemFs."),
    ("PUT 1 KiB", "davrepl (memory)"): (
        "callgrind over 20,000 PUTs of 1 KiB to new URLs (`METHOD=PUT bash "
        "bench/profile/callgrind-get.sh`, 2026-12-06): 33.9k instructions per PUT against "
        "23.0k for the ceiling (`METHOD=PUT bash bench/profile/callgrind-get.sh "
        "target/release/overhead ceiling`). hyper's side is the same in both, about 13k; the "
        "ceiling's axum route (read the body, copy it, one hash-map insert) is 5.5k, davrepl's "
        "whole WebDAV PUT 17.0k: the store's write 10.3k (staging the body 2.2k; the "
        "compare-and-swap step under the write lock 6.0k, of which the row, the ordered path "
        "set that listings need and the change-log entry are 3.0k; moving the write's futures "
        "into place about 1.5k) and the three tags (ETag, ResourceTag, Repl-UID) 2.1k. MemFs "
        "does an unversioned write: no log, no tags, no ordered index. The ceiling ran PUT at "
        "1.15× to 1.4× MemFs in the runs of 2026-12-06, so 1.2× MemFs asked for 0.87× to "
        "1.04× the ceiling: at best a versioned, logged write costing about a seventh more "
        "server CPU than a bare hash-map insert, at worst more than the ceiling itself. "
        "Here, unlike GET, the layer's work shows: in an alternating A/B (`METHOD=PUT bash "
        "bench/profile/ab-get.sh target/release/overhead:ceiling-headers "
        "target/release/davrepl-server 8`, 2026-12-06) davrepl ran at 0.80× a bare route "
        "sending its PUT headers, which alone took the ceiling to 0.94×. See the CPU table "
        "below."),
    ("GET 1 KiB", "davrepl (SQLite)"): (
        "a repeated GET is answered from the hot-row cache (no read transaction); the first "
        "GET of a resource after a commit is a per-thread SQLite read (the row and its "
        "content, one indexed lookup each) on the runtime thread; Apache serves a file "
        "through the page cache."),
    ("GET 1 MiB", "davrepl (memory)"): (
        "the response body is the stored 1 MiB `Bytes`, sent whole as the ceiling's is; what "
        "davrepl adds per request is the 1 KiB GET's work, about 2 µs against the ~160 µs "
        "each 1 MiB response takes here. An A/B with the two servers' runs alternating gave "
        "0.96–0.98×; a larger gap in this table is drift between the servers' turns."),
    ("GET 1 MiB", "davrepl (SQLite)"): (
        "a repeated GET of a 1 MiB item is served from the store's content cache (the bytes "
        "read from the content file once, kept as one `Bytes`), so this column runs within a "
        "few percent of the bare-axum ceiling: what writing 1 MiB through hyper costs here. "
        "Apache sends the file from the page cache with sendfile(2), never copying it through "
        "user space; its rate here moved between 4,400 and 4,800/s from run to run."),
    ("PUT 1 KiB", "davrepl (SQLite)"): (
        "each PUT is acknowledged once its group's commit is on disk (`synchronous=FULL`: "
        "one WAL sync per group of concurrent writes); Apache's mod_dav_fs writes into the "
        "page cache and never syncs. The disk's sync rate bounds it (the raw SQLite line "
        "above); on this virtual disk it varies severalfold within an hour."),
    ("PUT 1 MiB", "davrepl (SQLite)"): (
        "each upload is written to a new file beside the database and fsynced before its row "
        "commits (another fsync), and the file of the content it replaces is removed; a PUT "
        "without `OC-Checksum` is no longer hashed (digests are computed when first asked "
        "for, docs/clients.md; hashing all three was 2.5 ms of CPU per MiB and capped this "
        "row at about 450/s). Since then the server uses about one core during this load "
        "(pidstat 0.95) and the machine waits on the disk (mpstat: 30% iowait): iostat shows "
        "about 850 MB/s written and as much discarded, because the root filesystem is mounted "
        "with `discard` and every removed 1 MiB file is discarded at the journal commit the "
        "next fsyncs wait for. Apache's mod_dav_fs writes into the page cache and never "
        "syncs. The next lever is reusing a replaced content file for the next upload "
        "(overwriting its blocks: no allocation, no discard), which needs the streams that "
        "hold a file open counted first."),
}


def bound_lines(plain, results):
    """Why each missed target is missed, with the ceiling a target would need to pass."""
    out = []
    for row, a, b, want in TARGETS:
        fa = plain.get(row, {}).get(a)
        fb = results.get("pgbench") if b == PGBENCH else plain.get(row, {}).get(b)
        if not fa or not fb or fa["median"] / fb["median"] >= want:
            continue
        text = BOUNDS.get((row, a), "not profiled.")
        needed = want * fb["median"]
        ceiling = plain.get(row, {}).get(CEILING)
        if ceiling and b in plain[row] and b not in CEILINGS:
            text += " " + ceiling_sentences(plain, row, a, b, want)
        select = results.get("pgbench_select")
        if a == PG and row.startswith("GET") and select and needed > select["median"]:
            text += (f" The target needs {needed:,.0f} req/s, above the {select['median']:,.0f} "
                     "one-statement transactions per second `pgbench -S` gets from this "
                     "cluster: a store that sent one statement per GET could not reach it here.")
        out.append(f"- {row}, {a} ÷ {b}: {text}")
    return out


def ceiling_sentences(plain, row, a, b, want):
    """What a target of `a` against the peer `b` asks of the bare-axum ceiling in this run, the
    three servers' CPU per request, and what davrepl's response headers alone cost."""
    by = plain[row]
    c, fa, fb = by[CEILING]["median"], by[a]["median"], by[b]["median"]
    needed = want * fb
    if needed > c:
        text = (f"The target needs {needed:,.0f} req/s, above the bare-axum ceiling of {c:,.0f} "
                "on this machine: no layer over this HTTP stack can reach it here.")
    else:
        text = (f"In this run the target needs {needed:,.0f} req/s, **{needed / c:.2f}× the "
                f"bare-axum ceiling** ({c:,.0f}); {a} ran at {fa / c:.2f}× it and {b} at "
                f"{fb / c:.2f}×.")
    cpus = [(n, by[n]["cpu_us"]) for n in (CEILING, a, b) if "cpu_us" in by.get(n, {})]
    if len(cpus) == 3:
        text += (" Server CPU per request (user + system, µs): " + "; ".join(
            f"{n} {u['user']:.1f} + {u['system']:.1f}" for n, u in cpus) + ".")
    headers = by.get(CEILING_H)
    # Against another davrepl store (PostgreSQL against SQLite) the head is the same on both.
    if headers and a.startswith("davrepl") and not b.startswith("davrepl"):
        h = headers["median"]
        text += (f" The same bare route sending davrepl's response headers ran at {h / c:.2f}× "
                 f"the ceiling ({h:,.0f}), and {a} at **{fa / h:.2f}× that route**: the bytes "
                 f"of those headers alone cost {(1 - h / c) * 100:.0f}% of the ceiling's rate. "
                 f"A layer that cost nothing but sending that head would reach **{h / fb:.2f}× "
                 f"{b}** here, against the target's {want}×.")
    return text


def cpu_lines(plain):
    """The servers' CPU per request, user and system, for every row of the plain table."""
    servers = []
    for by in plain.values():
        servers += [k for k in by if k not in servers and "cpu_us" in by[k]]
    if not servers:
        return []
    out = ["### Server CPU per request\n",
           "Microseconds of CPU per request, user + system, medians of the same runs, read "
           "from `/proc` around each wrk run. The system share is the kernel's work for the "
           "server: the loopback TCP of every request and response, and for the stores on "
           "disk their file writes and syncs. A server's processes are counted "
           "with their children (Apache's workers); the PostgreSQL column counts the "
           "cluster's backends with the node. wrk shares the two cores, so a server that "
           "spends less per request leaves the client more.\n",
           "| request | " + " | ".join(servers) + " |",
           "|---|" + "---:|" * len(servers)]
    for row, by in plain.items():
        cells = []
        for n in servers:
            u = by.get(n, {}).get("cpu_us")
            cells.append(f"{u['user']:.1f} + {u['system']:.1f}" if u else "–")
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def write_report(results):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "peers.json"), "w") as f:
        json.dump(results, f, indent=1)
    L = []
    L.append("# davrepl side by side with its peers\n")
    L.append(f"Generated by `bash bench/peers/run.sh` on {results['date']}.  ")
    L.append(f"Machine: {results['machine']}. Client (wrk, {THREADS} threads, {CONNS} "
             f"connections, {SECONDS} s a run) and servers share the machine over loopback. "
             f"Each figure: median (min–max, number of runs); a figure from a single run says so.\n")
    ov = results.get("overhead")
    if ov:
        L.append("## 1. Layer overhead (pass-through path)\n")
        L.append("Both servers run at once; their runs alternate (bare, layered, layered, bare, …).\n")
        L.append("| server | GET /hello req/s |\n|---|---:|")
        L.append(f"| bare axum router | {fmt(ov['bare'])} |")
        L.append(f"| same router behind `ReplLayer` (mount `/dav`) | {fmt(ov['layered'])} |")
        if "pair_loss" not in ov:
            L.append("")
    if ov and "pair_loss" in ov:
        loss = ov["pair_loss"]
        L.append(f"\nLoss per interleaved pair of runs: median **{loss['median'] * 100:.1f}%** "
                 f"(min {loss['min'] * 100:.1f}%, max {loss['max'] * 100:.1f}%; target: under 2%). "
                 "A negative loss means the layered run was faster: noise of the shared machine.\n")
    plain = results.get("plain")
    if plain:
        servers = []
        for by in plain.values():
            servers += [k for k in by if k not in servers]
        L.append("## 2. Plain WebDAV, requests/s\n")
        L.append(f"`{CEILING}` is not a WebDAV server: a bare axum handler on the same hyper "
                 "stack that keeps each PUT body in a map and answers GET with it — the ceiling "
                 "of what any layer over that stack can reach. "
                 f"`{CEILING_H}` is the same handler answering with the response headers "
                 "davrepl sends (for a GET: ETag, ResourceTag, Last-Modified, Accept-Ranges and "
                 "the two stored-content safety headers; for a PUT: ETag, ResourceTag, Repl-UID), "
                 "as fixed strings of the same length: what those bytes cost the HTTP stack and "
                 "the client, without the work of making them.\n")
        L.append("| request | " + " | ".join(servers) + " | davrepl (memory) ÷ best peer |")
        L.append("|---|" + "---:|" * len(servers) + "---:|")
        for row, by in plain.items():
            peers = [v["median"] for k, v in by.items()
                     if not k.startswith("davrepl") and k not in CEILINGS]
            ratio = by["davrepl (memory)"]["median"] / max(peers) if peers else 0
            sq = by["davrepl (SQLite)"]["median"] / max(peers) if peers else 0
            L.append(f"| {row} | " + " | ".join(fmt(by[s]) if s in by else "–" for s in servers)
                     + f" | {ratio:.2f}× (SQLite {sq:.2f}×) |")
        L.append("")
        raw = results.get("sqlite_raw")
        if raw:
            put = plain.get("PUT 1 KiB", {}).get("davrepl (SQLite)")
            line = (f"Raw SQLite on the same disk (`sqlite_raw`: one-row INSERT transactions of "
                    f"1 KiB, one after another, WAL, `synchronous=FULL`): {fmt(raw)} per second.")
            if put:
                line += (f" davrepl (SQLite) PUT 1 KiB = **{put['median'] / raw['median']:.2f}×** "
                         "that (concurrent writes share one commit).")
            L.append(line + "\n")
        L.append("### Targets (issue #14), ratios of medians from this run\n")
        pgbench = results.get("pgbench")
        if pgbench:
            L.append(f"`{PGBENCH}`: {fmt(pgbench)} — {CONNS} clients of PostgreSQL's own "
                     "benchmark on the cluster the PostgreSQL column ran on, right after it.\n")
        select = results.get("pgbench_select")
        pg_get = plain.get("GET 1 KiB", {}).get(PG)
        if select and pg_get:
            L.append(f"`pgbench -S` (one SELECT by key per transaction, same clients, same "
                     f"cluster): {fmt(select)} TPS — the most one-statement reads this cluster "
                     f"answers here; davrepl (PostgreSQL) GET 1 KiB is "
                     f"**{pg_get['median'] / select['median']:.2f}×** that (a repeated GET "
                     f"shares one snapshot check with the GETs waiting beside it, see "
                     f"docs/operations.md).\n")
        L.append("| target | ratio | |\n|---|---:|---|")
        for row, a, b, want in TARGETS:
            fa = plain.get(row, {}).get(a)
            fb = pgbench if b == PGBENCH else plain.get(row, {}).get(b)
            if not fa or not fb:
                continue
            r = fa["median"] / fb["median"]
            L.append(f"| {row}: {a} ÷ {b} ≥ {want} | {r:.3f}× | {'met' if r >= want else '**missed**'} |")
        L.append("")
        bounds = bound_lines(plain, results)
        if bounds:
            L.append("What bounds each missed target:\n")
            L.extend(bounds)
            L.append("")
        L.extend(cpu_lines(plain))
    sync = results.get("sync")
    if sync:
        L.append("## 3. Sync cost against collection size\n")
        L.append("Delta = a manifest / sync-collection REPORT after 10 changes; full = a first "
                 "sync of the whole collection. Milliseconds, median (min–max).\n")
        sizes = sorted({int(n) for t in sync.values() for n in t})
        L.append("| members | " + " | ".join(f"{s}: delta | {s}: full" for s in sync) + " |")
        L.append("|---:|" + "---:|---:|" * len(sync))
        for n in sizes:
            cells = []
            for s, t in sync.items():
                r = t.get(n) or t.get(str(n))
                if not r:
                    cells += ["not run", "not run"]
                    continue
                cells.append(fmt(r["delta_ms"], 2) if r.get("delta_ms") else "over budget")
                if r.get("full_ms"):
                    cells.append(fmt(r["full_ms"], 1))
                else:
                    cells.append(f"over {r['over_s']} s" if r.get("over_s") else "–")
            L.append(f"| {n:,} | " + " | ".join(cells) + " |")
        def ratio_line(name, t):
            done = {int(n): r for n, r in t.items() if r.get("delta_ms")}
            if len(done) < 2:
                return ""
            a, b = done[min(done)], done[max(done)]
            return (f" {name}: delta at {max(done):,} ÷ at {min(done):,} = "
                    f"**{b['delta_ms']['median'] / a['delta_ms']['median']:.2f}×**.")

        L.append("")
        for name, t in sync.items():
            L.append(ratio_line(name, t))
        d = {int(n): r for n, r in sync.get("davrepl sync-collection (memory)", {}).items()}
        for peer in ("Radicale (filesystem)", "Xandikos (git)"):
            for n, r in sorted((int(n), r) for n, r in sync.get(peer, {}).items()):
                if r.get("delta_ms") and n in d:
                    L.append(f" At {n:,}: {peer}'s sync-collection delta takes "
                             f"{r['delta_ms']['median'] / d[n]['delta_ms']['median']:.0f}× davrepl's.")
        L.append("\n![sync cost](peers.svg)\n")
    mem = results.get("memory")
    if mem:
        L.append("## 4. Memory during a 1M-member first sync\n")
        L.append(f"davrepl (memory store, server and client in one benchmark process): "
                 f"{mem['members']:,} members, {mem['mb']:.0f} MB streamed in {mem['seconds']:.1f} s; "
                 f"RSS {mem['idle_mb']:.0f} MB idle (store filled), peak {mem['peak_mb']:.0f} MB — "
                 f"**{mem['peak_mb'] - mem['idle_mb']:.1f} MB** above idle: the manifest is streamed, "
                 "never built in memory.")
        rad = (sync or {}).get("Radicale (filesystem)", {})
        if rad:
            big = max(int(n) for n in rad)
            L.append(f" Radicale server peak RSS (VmHWM) after syncing {big:,} events: "
                     f"{(rad.get(big) or rad.get(str(big)))['rss_kb'] / 1024:.0f} MB.")
        L.append("")
    L.append("## Notes\n")
    L.extend(f"- {n}" for n in results.get("notes", []))
    with open(os.path.join(OUT, "peers.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    write_svg(results)


def write_svg(results):
    """Delta-sync time against collection size, log-log, one line per system."""
    sync = results.get("sync", {})
    W, H, ml, mr, mt, mb = 640, 380, 70, 20, 40, 60
    pts = {s: sorted((int(n), r["delta_ms"]["median"]) for n, r in t.items() if r.get("delta_ms"))
           for s, t in sync.items()}
    xs = [n for p in pts.values() for n, _ in p] or [1, 10]
    ys = [v for p in pts.values() for _, v in p] or [1, 10]
    import math
    x0, x1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    y1 = max(y1, y0 + 1)
    x1 = max(x1, x0 + 1)

    def X(n):
        return ml + (math.log10(n) - x0) / (x1 - x0) * (W - ml - mr)

    def Y(v):
        return H - mb - (math.log10(v) - y0) / (y1 - y0) * (H - mt - mb)

    colors = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df"]
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">Delta sync after 10 changes (ms, log) against collection size (log)</text>']
    for e in range(x0, x1 + 1):
        s.append(f'<line x1="{X(10 ** e):.1f}" y1="{mt}" x2="{X(10 ** e):.1f}" y2="{H - mb}" stroke="#ddd"/>')
        s.append(f'<text x="{X(10 ** e):.1f}" y="{H - mb + 16}" text-anchor="middle">{10 ** e:,}</text>')
    for e in range(y0, y1 + 1):
        s.append(f'<line x1="{ml}" y1="{Y(10 ** e):.1f}" x2="{W - mr}" y2="{Y(10 ** e):.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{ml - 6}" y="{Y(10 ** e) + 4:.1f}" text-anchor="end">{10 ** e:g}</text>')
    s.append(f'<text x="{W / 2}" y="{H - 18}" text-anchor="middle">members</text>')
    for i, (name, p) in enumerate(pts.items()):
        c = colors[i % len(colors)]
        if p:
            s.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                     + " ".join(f"{X(n):.1f},{Y(v):.1f}" for n, v in p) + '"/>')
            for n, v in p:
                s.append(f'<circle cx="{X(n):.1f}" cy="{Y(v):.1f}" r="3" fill="{c}"/>')
        s.append(f'<rect x="{ml + 10}" y="{mt + 8 + i * 18}" width="12" height="12" fill="{c}"/>')
        s.append(f'<text x="{ml + 28}" y="{mt + 18 + i * 18}">{name}</text>')
    s.append("</svg>")
    with open(os.path.join(OUT, "peers.svg"), "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--radicale", required=True)
    ap.add_argument("--xandikos", required=True)
    ap.add_argument("--only", default="overhead,plain,sync", help="comma-separated parts")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "notes": [
        "dav-server 0.11 (crates.io) on its LocalFs, behind hyper 1 HTTP/1.1, built in release "
        "mode (bench/peers/dav-server-peer); Apache httpd 2.4 (Debian) with mod_dav_fs, mpm_event, "
        "unlimited keep-alive; davrepl-server in release mode. davrepl-server and the bare-axum "
        "ceiling both use jemalloc as their global allocator (the ceiling so that the two differ "
        "only in the layer); the dav-server peer keeps the system allocator, as its crate ships.",
        "Radicale from PyPI, filesystem storage; its calendar is filled by writing the .ics files "
        "into its storage folder (what its PUT writes), then 10 events are changed through HTTP.",
        "Xandikos from PyPI, git-backed storage; its calendar is filled by writing the .ics files "
        "into its repository and committing them in one commit, then 10 events are changed "
        "through HTTP (10 commits).",
        "PUT 1 KiB creates a new URL with every request (the script numbers them per wrk "
        "thread); PUT 1 MiB overwrites one URL.",
        "Plain WebDAV: every server runs at once and each row's runs are interleaved (run 1 of "
        "every server, then run 2 in a rotated and reversed order, ...), so that drift of the "
        "shared machine hits all servers alike; before each PUT run, `sync` writes out what "
        "earlier runs left dirty in the page cache. Until 2026-12-05 the servers ran one "
        "after another.",
        "davrepl deltas (manifest and sync-collection): every size's server stays up and the "
        "timed deltas go round the sizes, one run of each in turn (10 untimed rounds, then the "
        "timed ones), so that drift hits every size alike; one size after the other, the "
        "ratio of two sizes' sub-millisecond medians moved between 0.7× and 2× from run to "
        "run.",
        "davrepl sync-collection: a level-1 sync-collection REPORT from the collection's "
        "DAV:sync-token after 10 changes (the `manifest` benchmark); its full sync is the "
        "manifest's (same log, same cost) and is not repeated.",
    ]}
    with tempfile.TemporaryDirectory(prefix="davrepl-peers-") as tmp:
        os.chmod(tmp, 0o755)
        if "overhead" in parts:
            run_overhead(tmp, results)
        if "plain" in parts:
            run_plain(tmp, results)
        if "sync" in parts:
            sizes = [1000, 10000] if QUICK else [1000, 10000, 100000, 1000000]
            run_davrepl_sync(sizes, results)
            small = [n for n in sizes if n <= 100000]
            run_peer_sync("Radicale (filesystem)",
                          lambda n: radicale_sync(args.radicale, tmp, n, budget=120), small, results)
            run_peer_sync("Xandikos (git)",
                          lambda n: xandikos_sync(args.xandikos, tmp, n, budget=120), small, results)
    results.setdefault("part_dates", {}).update(
        {k: results["date"] for k in ("overhead", "plain", "sqlite_raw", "pgbench",
                                      "pgbench_select", "sync", "memory") if k in results})
    # A partial run (--only) keeps the other parts' figures of the last full run.
    previous = os.path.join(OUT, "peers.json")
    if parts != {"overhead", "plain", "sync"} and os.path.exists(previous):
        with open(previous) as f:
            old = json.load(f)
        kept = [k for k in ("overhead", "plain", "sqlite_raw", "pgbench", "pgbench_select",
                            "sync", "memory")
                if k in old and k not in results]
        # Each kept part keeps the date it was measured on (not the date of the last run).
        old_dates = old.get("part_dates", {})
        dates = results.setdefault("part_dates", {})
        for k in kept:
            results[k] = old[k]
            dates[k] = old_dates.get(k, old.get("date"))
        results["notes"].append(f"Parts {', '.join(sorted(parts))} from {results['date']}; "
                                + "; ".join(f"{k} from {dates[k]}" for k in kept) + ".")
    write_report(results)
    print(f"wrote {OUT}/peers.md, peers.svg, peers.json")


if __name__ == "__main__":
    main()
