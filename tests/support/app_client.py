#!/usr/bin/env python3
"""A real application client for the soak test: redis-py's RedisCluster doing SET/GET.

    python app_client.py --seeds ip:port[,ip:port...] --password-file F --duration SECS
                         --report FILE [--key-prefix P] [--rate N] [--keys N]
                         [--max-ops N] [--socket-timeout SECS]

It measures what an application using redis-py with its default retries sees while the cluster
is faulted: every exception by class name, the longest stall between two successful operations,
the longest outage of one slot range, and reads that do not return the last acknowledged value.
The JSON report is written at the end, and also on SIGTERM (so the caller can stop it early).
It runs in the venv that hack/install-deps.sh creates (redis-py pinned there).
"""

import argparse
import json
import os
import signal
import sys
import time

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

# Keys are cycled over this many by default (bounded memory for the acknowledged-value table).
# Each visit GETs the key (checked against the value acknowledged on the previous visit) then SETs
# it, so at the default rate (200 ops/s) a key is read back about 20 s after it was written and a
# write lost in a failover shows up as a wrong read.
KEYS = 2000
# Slot ranges whose outage is tracked separately: 16 blocks of 1024 slots. A single-threaded
# application keeps succeeding on the healthy shards while one shard is down, so the longest gap
# between any two successes (the stall) underestimates the outage that one shard's keys suffer.
SLOT_BLOCKS = 16
SLOT_BLOCK = 16384 // SLOT_BLOCKS
MAX_SAMPLES = 20
MAX_STALLS = 200
STARTUP_LIMIT_S = 60.0
# Extra time past --duration after which SIGALRM ends the run, even inside a blocked call.
HARD_STOP_GRACE_S = 60


class Stop(BaseException):
    """Raised by the signal handlers. A BaseException, so redis-py's `except Exception` blocks do
    not swallow it and a blocked socket call is abandoned at once."""


class Report:
    def __init__(self, args, t0):
        self.t0 = t0
        # Wall clock at t0, so the caller can place the report's relative times among its faults.
        self.t0_unix = time.time()
        self.args = args
        self.ops = 0
        self.ok = 0
        self.sets_ok = 0
        self.gets_ok = 0
        self.errors = {}
        self.error_samples = []
        self.first_error_at = None
        self.last_error_at = None
        self.wrong_reads = 0
        self.lost_reads = 0
        self.wrong_read_samples = []
        self.startup_attempts = 0
        self.startup_s = None
        self.startup_failed = False
        self.stopped_by = None
        # Stall: the gap between two consecutive successful operations (startup included).
        self.last_ok = t0
        self.longest_stall = 0.0
        self.longest_stall_at = 0.0
        self.stalls_over_1s = []
        # Per slot block: the last success and whether it has failed since.
        self.block_last_ok = [t0] * SLOT_BLOCKS
        self.block_failing = [False] * SLOT_BLOCKS
        self.longest_outage = 0.0
        self.longest_outage_at = 0.0
        self.longest_outage_slots = None
        self.outages_over_1s = []
        # The operation under way: (began, op, key, block), for one cut short by SIGTERM.
        self.in_flight = None

    def rel(self, t):
        return round(t - self.t0, 3)

    def success(self, t, block):
        gap = t - self.last_ok
        if gap > self.longest_stall:
            self.longest_stall, self.longest_stall_at = gap, self.last_ok - self.t0
        if gap > 1.0 and len(self.stalls_over_1s) < MAX_STALLS:
            self.stalls_over_1s.append([self.rel(self.last_ok), round(gap, 3)])
        self.last_ok = t
        if self.block_failing[block]:
            self._outage(block, t)
        self.block_failing[block] = False
        self.block_last_ok[block] = t

    def _outage(self, block, t):
        began = self.block_last_ok[block]
        length = t - began
        slots = f"{block * SLOT_BLOCK}-{(block + 1) * SLOT_BLOCK - 1}"
        if length > self.longest_outage:
            self.longest_outage, self.longest_outage_at = length, began - self.t0
            self.longest_outage_slots = slots
        if length > 1.0 and len(self.outages_over_1s) < MAX_STALLS:
            self.outages_over_1s.append([self.rel(began), round(length, 3), slots])

    def error(self, t, block, op, key, exc):
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        if self.first_error_at is None:
            self.first_error_at = t
        self.last_error_at = t
        if block is not None:
            self.block_failing[block] = True
        if len(self.error_samples) < MAX_SAMPLES:
            self.error_samples.append(f"{self.rel(t)}s {op} {key}: {name}: {exc}"[:300])

    def wrong_read(self, t, key, got, acked, pending):
        self.wrong_reads += 1
        if got is None:
            self.lost_reads += 1
        if len(self.wrong_read_samples) < MAX_SAMPLES:
            self.wrong_read_samples.append(
                f"{self.rel(t)}s GET {key}: got {got!r}, acknowledged {acked!r}, "
                f"indeterminate {pending!r}"
            )

    def finish(self, t):
        # An outage or stall still open when the run ends counts too: a cluster that never
        # recovered must not report a short stall.
        stall_open = False
        gap = t - self.last_ok
        if gap > self.longest_stall:
            self.longest_stall, self.longest_stall_at = gap, self.last_ok - self.t0
            stall_open = True
        if gap > 1.0 and len(self.stalls_over_1s) < MAX_STALLS:
            self.stalls_over_1s.append([self.rel(self.last_ok), round(gap, 3)])
        interrupted = None
        if self.in_flight is not None:
            # A call still blocked at the end (a black-holed node) counts as failing its range;
            # one that had just begun when SIGTERM cut it short says nothing about the range
            # (seen: a SET 2 ms old marked a healthy range failing and failed the test).
            began, op, key, block = self.in_flight
            if t - began >= 1.0:
                self.block_failing[block] = True
            interrupted = f"{op} {key} began at {self.rel(began)}s, blocked {round(t - began, 3)}s"
        failing = []
        for block in range(SLOT_BLOCKS):
            if self.block_failing[block]:
                self._outage(block, t)
                failing.append(f"{block * SLOT_BLOCK}-{(block + 1) * SLOT_BLOCK - 1}")
        return {
            "redis_py": redis.__version__,
            "started_unix_s": round(self.t0_unix, 3),
            "duration_s": self.rel(t),
            "stopped_by": self.stopped_by,
            "rate": self.args.rate,
            "keys": self.args.keys,
            "socket_timeout_s": self.args.socket_timeout,
            "startup_s": None if self.startup_s is None else round(self.startup_s, 3),
            "startup_attempts": self.startup_attempts,
            "startup_failed": self.startup_failed,
            "ops": self.ops,
            "ok": self.ok,
            "sets_ok": self.sets_ok,
            "gets_ok": self.gets_ok,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "first_error_at_s": None if self.first_error_at is None else self.rel(self.first_error_at),
            "last_error_at_s": None if self.last_error_at is None else self.rel(self.last_error_at),
            "longest_stall_s": round(self.longest_stall, 3),
            "longest_stall_at_s": round(self.longest_stall_at, 3),
            "stall_open_at_end": stall_open,
            "stalls_over_1s": self.stalls_over_1s,
            "longest_outage_s": round(self.longest_outage, 3),
            "longest_outage_at_s": round(self.longest_outage_at, 3),
            "longest_outage_slots": self.longest_outage_slots,
            "outages_over_1s": self.outages_over_1s,
            # Slot ranges whose last operation failed: the application had not recovered there.
            "failing_slots_at_end": failing,
            "interrupted_op": interrupted,
            "wrong_reads": self.wrong_reads,
            "lost_reads": self.lost_reads,
            "wrong_read_samples": self.wrong_read_samples,
        }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", required=True, help="ip:port[,ip:port...]")
    p.add_argument("--password-file", help="file holding the password (none: no AUTH)")
    p.add_argument("--duration", type=float, required=True, help="seconds to run")
    p.add_argument("--report", required=True, help="JSON report path")
    p.add_argument("--key-prefix", default="app")
    p.add_argument("--rate", type=float, default=200.0, help="operations per second")
    p.add_argument("--keys", type=int, default=KEYS, help="keys cycled over (read-back lag)")
    p.add_argument("--max-ops", type=int, help="stop after this many operations")
    # Not a retry policy: redis-py's default is no socket timeout at all, so one read from a
    # black-holed node (a partition, a SIGSTOPped process) would block forever. Applications set
    # one; 0 keeps redis-py's default (None).
    p.add_argument("--socket-timeout", type=float, default=5.0)
    # TLS: ssl=True, the members' chain verified against this CA. Their hostnames are not
    # checked: the slot map gives node IPs, and member certificates carry the headless
    # Service's DNS names (the operator checks its serverName; redis-py cannot map IPs to it).
    p.add_argument("--tls-ca", help="CA file (PEM): connect with TLS")
    p.add_argument("--tls-cert", help="client certificate (PEM), for clientAuth")
    p.add_argument("--tls-key", help="client key (PEM), for clientAuth")
    args = p.parse_args(argv)
    if args.max_ops is None:
        args.max_ops = int(args.duration * args.rate * 2) + 1000
    return args


def seeds_of(text):
    nodes = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    return nodes


def tls_kwargs(args):
    """redis-py's TLS settings from the --tls-* arguments (none: plaintext)."""
    if not args.tls_ca:
        return {}
    kwargs = {"ssl": True, "ssl_ca_certs": args.tls_ca, "ssl_cert_reqs": "required",
              "ssl_check_hostname": False}
    if args.tls_cert:
        kwargs["ssl_certfile"] = args.tls_cert
        kwargs["ssl_keyfile"] = args.tls_key
    return kwargs


def connect(args, password, report, deadline):
    """Builds the client, retrying for up to STARTUP_LIMIT_S (and not past the run's deadline):
    the cluster may be mid-fault."""
    timeout = args.socket_timeout or None
    give_up = min(time.monotonic() + STARTUP_LIMIT_S, deadline)
    while True:
        report.startup_attempts += 1
        try:
            # Everything else is redis-py 6.4's default behaviour: `retry=None` means
            # Retry(ExponentialWithJitterBackoff(base=1, cap=10), retries=3) (from
            # cluster_error_retry_attempts=3), i.e. up to 4 attempts of a command when it fails
            # with ConnectionError, TimeoutError, ClusterDownError or SlotNotCoveredError; the
            # 6.4 command path does not sleep between those attempts except 0.25 s after
            # CLUSTERDOWN. Each failed attempt refreshes the slot map (CLUSTER SLOTS from a
            # known node); MOVED/ASK/TRYAGAIN are followed up to 16 redirects
            # (RedisClusterRequestTTL); the per-node connections themselves do not retry.
            # require_full_coverage=True, read_from_replicas=False, reinitialize_steps=5.
            client = RedisCluster(
                startup_nodes=seeds_of(args.seeds),
                password=password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                decode_responses=True,
                **tls_kwargs(args),
            )
            report.startup_s = time.monotonic() - report.t0
            return client
        except Exception as exc:  # noqa: BLE001 - any failure at startup is retried
            now = time.monotonic()
            report.error(now, None, "CONNECT", args.seeds, exc)
            if now + 1.0 > give_up:
                report.startup_failed = True
                return None
            time.sleep(1.0)


def run(args, client, report, deadline):
    prefix = args.key_prefix
    n = max(1, args.keys)
    keys = [f"{prefix}:{i}" for i in range(n)]
    blocks = [key_slot(k.encode()) // SLOT_BLOCK for k in keys]
    acked = [None] * n
    # Values of SETs that failed since the last acknowledged one: the server may or may not have
    # applied them, so a read may return any of them.
    pending = [[] for _ in range(n)]
    unknown = [False] * n
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    seq = 0

    def pace():
        nonlocal next_at
        now = time.monotonic()
        if next_at > now:
            time.sleep(next_at - now)
        elif now - next_at > 1.0:
            # After a stall, carry on at the set rate instead of bursting to catch up.
            next_at = now
        next_at += interval

    while time.monotonic() < deadline:
        i = seq % n
        key, block = keys[i], blocks[i]
        if acked[i] is not None and not unknown[i] and report.ops < args.max_ops:
            pace()
            report.ops += 1
            report.in_flight = (time.monotonic(), "GET", key, block)
            try:
                got = client.get(key)
                t = time.monotonic()
                report.ok += 1
                report.gets_ok += 1
                report.success(t, block)
                if got != acked[i] and got not in pending[i]:
                    report.wrong_read(t, key, got, acked[i], pending[i])
            except Exception as exc:  # noqa: BLE001 - the application sees it
                report.error(time.monotonic(), block, "GET", key, exc)
            report.in_flight = None
        if report.ops >= args.max_ops:
            report.stopped_by = "max_ops"
            return
        pace()
        report.ops += 1
        value = f"{seq}"
        report.in_flight = (time.monotonic(), "SET", key, block)
        try:
            client.set(key, value)
            t = time.monotonic()
            report.ok += 1
            report.sets_ok += 1
            report.success(t, block)
            acked[i], pending[i], unknown[i] = value, [], False
        except Exception as exc:  # noqa: BLE001 - the application sees it
            report.error(time.monotonic(), block, "SET", key, exc)
            if len(pending[i]) < 8:
                pending[i].append(value)
            else:
                unknown[i] = True
        report.in_flight = None
        seq += 1
    report.stopped_by = "duration"


def write_report(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def main(argv):
    t0 = time.monotonic()
    args = parse_args(argv)
    report = Report(args, t0)
    password = None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().strip() or None
    finishing = False

    def on_signal(signum, _frame):
        if not finishing:
            raise Stop("sigterm" if signum == signal.SIGTERM else "alarm")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(args.duration) + HARD_STOP_GRACE_S)
    deadline = t0 + args.duration
    try:
        client = connect(args, password, report, deadline)
        if client is None:
            report.stopped_by = "startup_failed"
        else:
            run(args, client, report, deadline)
    except Stop as stop:
        report.stopped_by = str(stop)
    finishing = True
    signal.alarm(0)
    write_report(args.report, report.finish(time.monotonic()))
    return 2 if report.startup_failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
