#!/usr/bin/env python3
"""The scale benchmark's figures (see e2e/scale.sh), as markdown on stdout.

usage: scale_report.py RUN PODS NODES CARDS T0 T_CREATED T_BOUND HAMI_RSS_KB APISERVER_RSS_KB
                       KUBE_SCHEDULER_RSS_KB POLICY LOAD_BEFORE LOAD_AFTER
RUN holds hami.before/after (our /metrics), apiserver.before/after (apiserver_request_total
lines), cpu.before/after (CPU seconds per component and of the machine), progress.tsv (time,
pods bound), pods.json and create.err.
"""
import json
import re
import sys

(run, pods, nodes, cards, t0, tc, t1, hami_rss, api_rss, ks_rss, policy, load0, load1) = sys.argv[1:14]
pods, nodes, cards = int(pods), int(nodes), int(cards)
t0, tc, t1 = float(t0), float(tc), float(t1)
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+([-+0-9.eE]+|NaN|\+Inf)')
LAB = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(path):
    out = {}
    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        labels = tuple(sorted(LAB.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def diff(a, b):
    return {k: v - a.get(k, 0.0) for k, v in b.items()}


h = diff(parse(f"{run}/hami.before"), parse(f"{run}/hami.after"))
api = diff(parse(f"{run}/apiserver.before"), parse(f"{run}/apiserver.after"))


def total(name, **want):
    return sum(v for (n, l), v in h.items()
               if n == name and all(dict(l).get(k) == x for k, x in want.items()))


def quantile(name, q, result="success"):
    buckets = sorted(
        (float(dict(l)["le"]) if dict(l)["le"] != "+Inf" else float("inf"), v)
        for (n, l), v in h.items()
        if n == f"{name}_bucket" and dict(l).get("result") == result)
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    n = buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= q * n:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((q * n - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


def api_quantile(verb, resource, subresource, q):
    """Quantile (s) of the API server's own request latency, from apiserver_request_duration_seconds."""
    acc = {}
    for (n, l), v in api.items():
        d = dict(l)
        if (n == "apiserver_request_duration_seconds_bucket" and d.get("verb") == verb
                and d.get("resource") == resource and d.get("subresource", "") == subresource):
            le = float("inf") if d["le"] == "+Inf" else float(d["le"])
            acc[le] = acc.get(le, 0.0) + v
    b = sorted(acc.items())
    if not b or b[-1][1] <= 0:
        return float("nan")
    n = b[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in b:
        if c >= q * n:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((q * n - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


def api_total(verb, resource, subresource=""):
    return sum(v for (n, l), v in api.items()
               if n == "apiserver_request_total" and dict(l).get("verb") == verb
               and dict(l).get("resource") == resource and dict(l).get("subresource", "") == subresource)


bound = int(total("hami_scheduler_bind_total", result="success"))
bind_err = int(total("hami_scheduler_bind_total", result="error"))
filt_ok = int(total("hami_scheduler_filter_total", result="success"))
filt_fail = int(total("hami_scheduler_filter_total", result="failed"))
filt_err = int(total("hami_scheduler_filter_total", result="error"))
w_patch = int(total("hami_scheduler_api_writes_total", kind="patch_pod"))
w_bind = int(total("hami_scheduler_api_writes_total", kind="bind"))
w_event = int(total("hami_scheduler_api_writes_total", kind="event"))
w_node = int(total("hami_scheduler_api_writes_total", kind="patch_node"))

live = json.load(open(f"{run}/pods.json"))["items"]
on_node = sum(1 for p in live if p.get("spec", {}).get("nodeName"))
running = sum(1 for p in live if p.get("status", {}).get("phase") == "Running")
create_errors = [l for l in open(f"{run}/create.err") if l.strip()]

# Time to 50 % / 90 % / 100 % bound, from the progress samples.
prog = [tuple(map(float, l.split())) for l in open(f"{run}/progress.tsv") if l.strip()]


def when(frac):
    for t, b in prog:
        if b >= frac * pods:
            return t - t0
    return float("nan")


e2e_s = t1 - t0
print(f"## Scale benchmark: {nodes} KWOK nodes × {cards} GPUs, {pods} GPU pods ({policy})\n")
print(f"- load before: `{load0.strip()}`")
print(f"- load after:  `{load1.strip()}`\n")
print("| figure | value |")
print("|---|---|")
print(f"| pods created (kubectl, parallel) | {len(live)} in {tc - t0:.1f} s ({len(live) / max(tc - t0, 1e-9):.0f} pods/s); create errors: {len(create_errors)} |")
print(f"| bound (extender binds) | {bound}; pods with nodeName {on_node}; Running {running} |")
print(f"| first create → last bind | {e2e_s:.1f} s → **{bound / max(e2e_s, 1e-9):.0f} pods/s** end to end |")
print(f"| time to 50 % / 90 % / 100 % bound | {when(0.5):.1f} s / {when(0.9):.1f} s / {when(1.0):.1f} s |")
print(f"| extender filter latency (success) p50 / p99 | {quantile('hami_scheduler_filter_duration_seconds', 0.5) * 1000:.2f} ms / {quantile('hami_scheduler_filter_duration_seconds', 0.99) * 1000:.2f} ms |")
print(f"| extender bind latency (success) p50 / p99 | {quantile('hami_scheduler_bind_duration_seconds', 0.5) * 1000:.2f} ms / {quantile('hami_scheduler_bind_duration_seconds', 0.99) * 1000:.2f} ms |")
print(f"| API server's own latency p50 / p99: PATCH pods (our bind patch; the fake kubelet's allocate mark) / POST pods/binding (inside our bind) | "
      f"{api_quantile('PATCH', 'pods', '', 0.5) * 1000:.1f} / {api_quantile('PATCH', 'pods', '', 0.99) * 1000:.1f} ms; "
      f"{api_quantile('POST', 'pods', 'binding', 0.5) * 1000:.1f} / {api_quantile('POST', 'pods', 'binding', 0.99) * 1000:.1f} ms |")
print(f"| filter calls: success / failed / error | {filt_ok} / {filt_fail} / {filt_err} |")
print(f"| bind calls: success / error | {bound} / {bind_err} |")
print(f"| our API writes (patch_pod / bind / event / patch_node) | {w_patch} / {w_bind} / {w_event} / {w_node} → {(w_patch + w_bind + w_event) / max(bound, 1):.2f} per bound pod, {(w_patch + w_event) / max(bound, 1):.2f} beyond the Binding |")
print(f"| apiserver: POST pods / POST pods/binding / PATCH pods / PUT+PATCH pods/status / POST events | "
      f"{api_total('POST', 'pods'):.0f} / {api_total('POST', 'pods', 'binding'):.0f} / {api_total('PATCH', 'pods'):.0f} / "
      f"{api_total('PUT', 'pods', 'status') + api_total('PATCH', 'pods', 'status'):.0f} / {api_total('POST', 'events') + api_total('CREATE', 'events'):.0f} |")
print(f"| peak RSS (VmHWM): hami scheduler / kube-apiserver / kube-scheduler | {int(hami_rss) / 1024:.0f} MiB / {int(api_rss) / 1024:.0f} MiB / {int(ks_rss) / 1024:.0f} MiB |")
print()
print("PATCH pods counts our bind patch and the fake kubelet's allocate mark (one each per pod);")
print("pods/status writes are KWOK's (kubelet's job). Events: kube-scheduler's and ours.")


def cpu(path):
    out = {}
    for line in open(path):
        k, v = line.split()
        out[k] = float(v)
    return out


c0, c1 = cpu(f"{run}/cpu.before"), cpu(f"{run}/cpu.after")
used = {k: c1[k] - c0.get(k, 0.0) for k in c1}
machine = used.pop("machine", 0.0)
print()
print(f"CPU seconds during the pod phase ({e2e_s:.0f} s wall, 2 cores = {2 * e2e_s:.0f} core-seconds available;"
      f" the whole machine used {machine:.0f}, other builds included):\n")
print("| component | CPU s | per pod |")
print("|---|---|---|")
for k, v in sorted(used.items(), key=lambda kv: -kv[1]):
    print(f"| {k} | {v:.1f} | {1000 * v / max(bound, 1):.2f} ms |")
ours = sum(used.values())
print(f"| (all components of this run) | {ours:.1f} | {1000 * ours / max(bound, 1):.2f} ms |")
print(f"| (rest of the machine: kubectl, other builds) | {machine - ours:.1f} | |")


# Every request the API server served during the pod phase, per GPU pod bound, by verb and
# resource: where its CPU goes (writes, reads, watches) and who causes it.
def grouped(name, keys):
    acc = {}
    for (n, l), v in api.items():
        if n != name or v <= 0:
            continue
        d = dict(l)
        k = tuple(d.get(x, "") for x in keys)
        acc[k] = acc.get(k, 0.0) + v
    return acc


per = max(bound, 1)
print()
print("API server requests during the pod phase (apiserver_request_total), per GPU pod bound:\n")
print("| verb | resource | subresource | count | per pod |")
print("|---|---|---|---|---|")
reqs = grouped("apiserver_request_total", ("verb", "resource", "subresource"))
for (verb, res, sub), v in sorted(reqs.items(), key=lambda kv: -kv[1]):
    if v >= 0.005 * per:
        print(f"| {verb} | {res} | {sub} | {v:.0f} | {v / per:.2f} |")
writes = sum(v for (verb, _, _), v in reqs.items() if verb in ("POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE"))
print(f"| (all writes) | | | {writes:.0f} | {writes / per:.2f} |")
ev = grouped("apiserver_watch_events_total", ("group", "version", "resource", "kind"))
if ev:
    print()
    print("Watch events sent (apiserver_watch_events_total: each change × each watcher), per GPU pod bound:\n")
    print("| resource | events | per pod |")
    print("|---|---|---|")
    for k, v in sorted(ev.items(), key=lambda kv: -kv[1]):
        name = "/".join(x for x in k if x)
        print(f"| {name} | {v:.0f} | {v / per:.2f} |")
after = parse(f"{run}/apiserver.after")
w = {}
for (n, l), v in after.items():
    if n == "apiserver_registered_watchers":
        d = dict(l)
        k = "/".join(x for x in (d.get("group", ""), d.get("kind", d.get("resource", ""))) if x)
        w[k] = w.get(k, 0.0) + v
if w:
    print()
    print("Registered watchers at the end: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(w.items(), key=lambda kv: -kv[1]) if v > 0))

import os

idle = diff(parse(f"{run}/apiserver.idle0"), parse(f"{run}/apiserver.idle1"))
idle_s = float(os.environ.get("IDLE_S", "10") or 10)
acc = {}
for (n, l), v in idle.items():
    d = dict(l)
    if n == "apiserver_request_total" and v > 0 and d.get("verb") not in ("WATCH", "LIST", "GET"):
        k = (d.get("verb", ""), d.get("resource", ""), d.get("subresource", ""))
        acc[k] = acc.get(k, 0.0) + v
print()
print(f"Idle cluster before the pods ({idle_s:.0f} s, KWOK flags `{os.environ.get('KWOK_ARGS', '')}`): "
      f"{sum(acc.values()) / idle_s:.1f} writes/s"
      + ("" if not acc else " — " + ", ".join(f"{verb} {res}{'/' + sub if sub else ''} {v / idle_s:.1f}/s"
                                               for (verb, res, sub), v in sorted(acc.items(), key=lambda kv: -kv[1]))))
