"""The outputs of a run: the Markdown report, the JSON results, the gnuplot plots.

Also the small statistics helpers scenarios use in summarize(): aggregate()
groups the measurements of a scenario by (kind, connections) and server and
takes medians over the repetitions.
"""

import json
import os
import shutil
import subprocess

from .util import median, write_text

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))


# ---- statistics -------------------------------------------------------------------

def aggregate(results):
    """{(kind, connections): {server: stats}} where stats has the medians of
    rps, p50_ms, p90_ms, p99_ms, max_ms over the runs without error, their
    *_min/*_max, the summed errors and non2xx, and n (runs) / failed (runs)."""
    groups = {}
    for r in results:
        groups.setdefault((r.get("kind"), r.get("connections")), {}).setdefault(r["server"], []).append(r)
    out = {}
    for key, by_server in groups.items():
        out[key] = {}
        for server, rs in by_server.items():
            good = [r for r in rs if not r.get("error")]
            st = {"n": len(rs), "failed": len(rs) - len(good),
                  "errors": sum(r.get("errors") or 0 for r in rs),
                  "non2xx": sum(r.get("non2xx") or 0 for r in rs),
                  "requests": sum(r.get("requests") or 0 for r in rs)}
            for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "bytes_per_req", "server_cpu_pct"):
                vals = [r.get(k) for r in good if r.get(k) is not None]
                st[k] = median(vals)
                st[k + "_min"] = min(vals) if vals else None
                st[k + "_max"] = max(vals) if vals else None
            st["rps_by_rep"] = {r.get("rep", 0): r["rps"] for r in good if r.get("rps")}
            peaks = [r.get("rss_peak_kb") for r in rs if r.get("rss_peak_kb") is not None]
            st["rss_peak_kb"] = max(peaks) if peaks else None
            out[key][server] = st
    return out


def paired_ratios(target_stats, baseline_stats):
    """target rps / baseline rps for each repetition both completed.  The two
    runs of a repetition ran back to back, so slow drift in the machine's
    speed cancels out of each ratio."""
    if not target_stats or not baseline_stats:
        return []
    a, b = target_stats.get("rps_by_rep", {}), baseline_stats.get("rps_by_rep", {})
    return [a[k] / b[k] for k in sorted(a) if k in b and b[k]]


def ratio(target_stats, baseline_stats):
    """The median of the paired ratios (target rps / baseline rps), None when
    no repetition has both."""
    return median(paired_ratios(target_stats, baseline_stats))


def ratio_range(target_stats, baseline_stats):
    """(min, max) of the paired ratios, or None."""
    r = paired_ratios(target_stats, baseline_stats)
    return (min(r), max(r)) if r else None


def fmt_rps(v):
    if v is None:
        return "n/a"
    if v >= 10000:
        return "%.1fk" % (v / 1000.0)
    return "%.0f" % v if v >= 100 else "%.1f" % v


def fmt_ms(v):
    if v is None:
        return "n/a"
    return "%.2f ms" % v if v < 10 else "%.1f ms" % v


def fmt_ratio(v, rng=None):
    """'1.08' or, with a (min, max) range of more than one value, '1.08 (0.91–1.19)'."""
    if v is None:
        return "n/a"
    if rng and rng[0] != rng[1]:
        return "%.2f (%.2f–%.2f)" % (v, rng[0], rng[1])
    return "%.2f" % v


def fmt_mb(kb):
    return "n/a" if kb is None else "%.1f MB" % (kb / 1024.0)


def one_line(text, limit=200):
    """'text' fit for a table cell: first line, no pipes, at most 'limit' characters."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    line = line.replace("|", "/")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _n(v, fmt="%.2f"):
    return "n/a" if v is None else fmt % v


# ---- plots ------------------------------------------------------------------------

def plot(spec, outdir, basename, workdir):
    """Draws spec (name, title, xlabel, ylabel, series {label: [(x, y, ymin, ymax)]})
    with gnuplot into outdir/<basename>-<name>.svg.  Returns (path, command) or
    (None, reason)."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return None, "gnuplot is not installed (scripts/install-deps.sh bench)"
    series = {k: v for k, v in spec["series"].items() if v}
    if not series:
        return None, "no data"
    out = os.path.join(outdir, "%s-%s.svg" % (basename, spec["name"]))
    xs = sorted({p[0] for pts in series.values() for p in pts})
    lines = [
        'set terminal svg size 760,440 dynamic enhanced font "sans,12" background "white"',
        'set output "%s"' % out,
        'set title "%s" noenhanced' % spec["title"].replace('"', "'"),
        'set xlabel "%s"' % spec["xlabel"],
        'set ylabel "%s"' % spec["ylabel"],
        "set logscale x",
        "set xtics (%s)" % ", ".join(str(x) for x in xs),
        "set xrange [%g:%g]" % (xs[0] * 0.8, xs[-1] * 1.25),
        "set yrange [0:*]",
        "set grid",
        "set key top left",
        "set format y '%.0s%c'" if "requests" in spec["ylabel"] else "set format y '%g'",
    ]
    plots = []
    for i, (label, pts) in enumerate(series.items()):
        lines.append("$d%d << EOD" % i)
        # nudge each series sideways (x is on a log scale) so error bars do not hide each other
        shift = 1.0 + 0.03 * (i - (len(series) - 1) / 2.0)
        for x, y, lo, hi in pts:
            lines.append("%g %g %g %g" % (x * shift, y, lo if lo is not None else y, hi if hi is not None else y))
        lines.append("EOD")
        plots.append('$d%d using 1:2:3:4 with yerrorlines lw 2 pt 7 title "%s (median, min-max)"' % (i, label))
    lines.append("plot " + ", ".join(plots))
    script = os.path.join(workdir, "plot-%s.gp" % spec["name"])
    write_text(script, "\n".join(lines) + "\n")
    cmd = [gnuplot, script]
    r = subprocess.run(cmd, capture_output=True, text=True)
    # keep a copy of the script next to the image so the plot can be redrawn
    # (with a relative output name: cd to the report's folder and run gnuplot on it)
    gp_copy = os.path.join(outdir, "%s-%s.gp" % (basename, spec["name"]))
    write_text(gp_copy, "\n".join(lines).replace('set output "%s"' % out,
                                                 'set output "%s"' % os.path.basename(out)) + "\n")
    if r.returncode != 0 or not os.path.exists(out):
        return None, "gnuplot failed: " + r.stderr.strip()[-300:]
    return out, "gnuplot " + os.path.basename(gp_copy)


# ---- Markdown ---------------------------------------------------------------------

def _stats_cells(st):
    if not st:
        return ["n/a"] * 4
    rng = ""
    if st.get("rps_min") is not None and st["n"] > 1:
        rng = " (%s–%s)" % (fmt_rps(st["rps_min"]), fmt_rps(st["rps_max"]))
    lat = "%s / %s / %s / %s" % (_n(st.get("p50_ms")), _n(st.get("p90_ms")), _n(st.get("p99_ms")),
                                 _n(st.get("max_ms")))
    err = "%d / %d" % (st["errors"], st["non2xx"]) + (" (%d runs failed)" % st["failed"] if st["failed"] else "")
    cpu = _n(st.get("server_cpu_pct"), "%.0f%%")
    return [fmt_rps(st.get("rps")) + rng, lat, err, cpu]


def scenario_markdown(sc, ctx, outdir, basename, files):
    t = ctx.target.name
    b = ctx.baseline.name if ctx.baseline else "nginx"
    md = ["## Scenario `%s`: %s" % (sc.name, sc.title), ""]
    doc = (getattr(sc.module, "__doc__", "") or "").strip().split("\n\n")[0].replace("\n", " ")
    doc = doc.split(" -- ", 1)[-1]
    if doc:
        md += [doc, ""]
    if sc.status != "ok":
        md += ["**%s**" % one_line(sc.reason, 300), ""]
        if "\n" in (sc.reason or ""):
            md += ["```", sc.reason.strip(), "```", ""]
    s = sc.summary or {}
    if getattr(sc, "prepare_s", None) is not None:
        md += ["Seeding before the measurements (not measured): %.1f s." % sc.prepare_s, ""]
    for note in s.get("notes", []):
        md += ["- Note: %s" % note]
    if s.get("notes"):
        md.append("")
    ns = [row[role]["n"] for row in s.get("headline") or [] for role in ("target", "baseline") if row.get(role)]
    n_reps = max(ns) if ns else ctx.opts.reps
    if s.get("headline"):
        md += ["Medians of %s%d run%s each, the two servers alternating; ranges are min–max. Latency "
               "p50 / p90 / p99 / max in ms; errors = socket errors, timeouts and failed requests; "
               "non-2xx = responses with another status (wrk: status >= 400). Server CPU = the server's "
               "CPU time / wall time (200%% = both cores)." % (
                   "up to " if len(set(ns)) > 1 else "", n_reps, "" if n_reps == 1 else "s"), "",
               "| measurement | server | req/s | latency ms | errors / non-2xx | server CPU | bytes/response | "
               "ratio %s/%s |" % (t, b),
               "|---|---|---|---|---|---|---|---|"]
        for row in s["headline"]:
            # a row may name the server it measured (remote_join: the second axon)
            tn = row.get("target_name") or t
            roles = (("target", tn), ("baseline", b)) if row.get("baseline") or not row.get("ratio_note") \
                else (("target", tn),)
            for role, name in roles:
                st = row[role]
                cells = _stats_cells(st)
                bpr = _n(st.get("bytes_per_req") if st else None, "%.0f")
                rt = ""
                if role == "target":
                    rt = row["ratio_note"] if row.get("ratio_note") and row["ratio"] is None else \
                        "**%s**" % fmt_ratio(row["ratio"], row.get("ratio_range"))
                md.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    row["label"] if role == "target" else "", name, cells[0], cells[1], cells[2], cells[3], bpr, rt))
        md.append("")
    if s.get("extra"):
        md += list(s["extra"]) + [""]
    if s.get("sweep"):
        md += ["### Throughput and p99 latency vs connections (wrk)", "",
               "| connections | %s req/s | %s req/s | %s/%s | %s p99 | %s p99 |" % (t, b, t, b, t, b),
               "|---|---|---|---|---|---|"]
        for row in s["sweep"]:
            ta, ba = row["target"] or {}, row["baseline"] or {}
            md.append("| %d | %s | %s | %s | %s | %s |" % (
                row["connections"], fmt_rps(ta.get("rps")), fmt_rps(ba.get("rps")),
                fmt_ratio(row["ratio"], row.get("ratio_range")),
                fmt_ms(ta.get("p99_ms")), fmt_ms(ba.get("p99_ms"))))
        md.append("")
    for p in s.get("plots", []):
        path, how = plot(p, outdir, basename, ctx.workdir)
        if path:
            files.append(path)
            files.append(os.path.join(outdir, "%s-%s.gp" % (basename, p["name"])))
            ctx.commands.append(("plot", how))
            md += ["![%s](%s)" % (p["title"], os.path.basename(path)), ""]
        else:
            md += ["(plot %s not drawn: %s)" % (p["name"], how), ""]
    if sc.rss:
        md += ["### Memory (VmRSS%s)" % (", summed over master and workers for nginx" if ctx.baseline else ""), "",
               "| server | idle before | peak during (sampled every 100 ms) | after (load stopped, settled) |",
               "|---|---|---|---|"]
        for name, r in sc.rss.items():
            md.append("| %s | %s | %s | %s |" % (name, fmt_mb(r.get("idle_before_kb")), fmt_mb(r.get("peak_kb")),
                                                 fmt_mb(r.get("after_kb"))))
        md.append("")
    if sc.results:
        md += ["<details><summary>Every run (%d)</summary>" % len(sc.results), "",
               "CPU columns are CPU time / wall time (100% = one core): the server's, the load "
               "generator's, and everything else's on the machine during the run.", "",
               "| # | tool | server | conns | rep | req/s | p50 | p90 | p99 | max (ms) | errors | non-2xx | "
               "RSS peak | server CPU | tool CPU | other CPU | error |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(sc.results, 1):
            md.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                i, r.get("kind"), r["server"], r.get("connections", ""), (r.get("rep") or 0) + 1,
                _n(r.get("rps"), "%.0f"), _n(r.get("p50_ms")), _n(r.get("p90_ms")), _n(r.get("p99_ms")),
                _n(r.get("max_ms")), _n(r.get("errors"), "%d"), _n(r.get("non2xx"), "%d"),
                fmt_mb(r.get("rss_peak_kb")), _n(r.get("server_cpu_pct"), "%.0f%%"),
                _n(r.get("tool_cpu_pct"), "%.0f%%"), _n(r.get("other_cpu_pct"), "%.0f%%"),
                one_line(r.get("error"))))
        md += ["", "</details>", ""]
    return md


def write(outdir, basename, meta, runs, ctx, want_json=False):
    """Writes <outdir>/<basename>.md (and .json, and the plots).  Returns the paths."""
    files = []
    m = meta["machine"]
    tgt = meta.get("target", {})
    t = ctx.target.name if ctx.target else "target"
    b = ctx.baseline.name if ctx.baseline else "nginx"
    commit = meta.get("commit") or "unknown"
    md = ["# axon benchmark: %s on %s" % (meta["started"][:10], m["hostname"]), ""]
    if ctx.opts.quick:
        md += ["**Smoke run (`--quick`): tiny request counts; these numbers mean nothing.**", ""]
    md += ["- Command: `%s`" % " ".join(meta["argv"]),
           "- Target: %s" % (
               "fresh `%s` (%s build, `%s`) at %s" % (tgt.get("version", "axon"), tgt.get("buildtype"),
                                                     tgt.get("binary", "?"),
                                                     tgt.get("url")) if tgt.get("managed")
               else "%s (%s, Server: %s)" % (tgt.get("url"), t, tgt.get("server_header"))),
           "- Paths below are relative to the repository root.",
           "- Source: commit `%s`%s" % (commit, " **with uncommitted changes**" if meta.get("dirty") else ""),
           "- Baseline: nginx (2 workers, `access_log off`) answering `return 200` with the target's exact "
           "body, content-type and CORS headers, HTTP/1.1 and h2c, on loopback",
           "- Started %s, finished %s (%s s)" % (meta["started"], meta.get("finished", "?"),
                                                 meta.get("elapsed_s", "?")),
           ""]
    if meta.get("fatal"):
        md += ["**The run failed: %s**" % meta["fatal"].replace("\n", " ")[:1000], ""]
    for c in tgt.get("crashes", []):
        md += ["**axon crashed during `%s` (exit status %s)**: see \"Machine\" below; later scenarios ran on a "
               "fresh axon." % (c["during"], c["exit_status"]), ""]

    # headline across scenarios
    md += ["## Headline", "",
           "Ratios %s/%s are the numbers to read: both servers ran on the same machine in the same run, "
           "so machine speed and background noise cancel out (mostly). Each ratio is the median over the "
           "repetitions of (%s req/s / %s req/s), the two runs of a repetition back to back; the range in "
           "brackets is the lowest and highest of those ratios. Absolute numbers move from run "
           "to run on a shared 2-core machine where the load generator competes with the server." % (t, b, t, b),
           "",
           "| scenario | measurement | %s req/s | %s req/s | %s/%s | %s p99 | %s p99 |" % (t, b, t, b, t, b),
           "|---|---|---|---|---|---|---|"]
    for sc in runs:
        s = sc.summary or {}
        if sc.status != "ok" or not s.get("headline"):
            md.append("| %s | %s | | | | | |" % (sc.name, one_line(sc.reason or sc.status)))
            continue
        for row in s["headline"]:
            ta, ba = row["target"] or {}, row["baseline"] or {}
            if row.get("ratio_note") and row["ratio"] is None:
                md.append("| %s | %s | %s | – | %s | %s | – |" % (
                    sc.name, row["label"], fmt_rps(ta.get("rps")), row["ratio_note"], fmt_ms(ta.get("p99_ms"))))
                continue
            md.append("| %s | %s | %s | %s | **%s** | %s | %s |" % (
                sc.name, row["label"], fmt_rps(ta.get("rps")), fmt_rps(ba.get("rps")),
                fmt_ratio(row["ratio"], row.get("ratio_range")),
                fmt_ms(ta.get("p99_ms")), fmt_ms(ba.get("p99_ms"))))
    md.append("")
    bad = [(sc.name, r) for sc in runs for r in sc.results if r.get("error") or r.get("errors") or r.get("non2xx")]
    if bad:
        md += ["**%d run%s had errors or non-2xx responses** (the numbers of those runs are suspect):" % (
            len(bad), "" if len(bad) == 1 else "s"), ""]
        for name, r in bad[:20]:
            md.append("- %s: %s against %s (rep %d): %s" % (
                name, r.get("kind"), r["server"], (r.get("rep") or 0) + 1,
                one_line(r.get("error")) or "%s errors, %s non-2xx of %s requests" % (
                    r.get("errors"), r.get("non2xx"), r.get("requests"))))
        md.append("")
    checks = [(sc.name, c) for sc in runs for c in ((sc.summary or {}).get("checks") or [])]
    if checks:
        md += ["Targets from the issues:", "", "| scenario | target | measured | goal | met |", "|---|---|---|---|---|"]
        for name, c in checks:
            met = "n/a" if c["met"] is None else ("yes" if c["met"] else "**no**")
            md.append("| %s | %s | %s | %s | %s |" % (name, c["what"], c["value"], c["goal"], met))
        md.append("")

    # machine
    md += ["## Machine", "",
           "| | |", "|---|---|",
           "| CPU | %s, %s cores |" % (m["cpu_model"], m["cores"]),
           "| RAM | %s MB |" % m["mem_total_mb"],
           "| OS / kernel | %s / %s |" % (m["os"], m["kernel"]),
           "| load average (1/5/15 min) | start %s; before load %s; end %s |" % (
               meta.get("loadavg_start"), meta.get("loadavg_before_load", "?"), meta.get("loadavg_end", "?")),
           "| CPU steal during the load (time the host gave to others) | %s |" % (
               "n/a" if meta.get("steal_pct") is None else "%.1f%%" % meta["steal_pct"]),
           "| CPU used by other processes during the runs (median; 100%% = one core) | %s |" % (
               _n(median([r.get("other_cpu_pct") for sc in runs for r in sc.results]), "%.0f%%")),
           "| RSS at start-up | %s %s; %s %s |" % (t, fmt_mb(tgt.get("rss_startup_kb")), b,
                                                  fmt_mb(meta.get("baseline", {}).get("rss_startup_kb"))),
           "| peak RSS over the run (VmHWM) | %s %s; %s %s |" % (t, fmt_mb(tgt.get("hwm_kb")), b,
                                                                fmt_mb(meta.get("baseline", {}).get("hwm_kb"))),
           ]
    for tool, v in m["tools"].items():
        md.append("| %s | %s |" % (tool, v))
    md += ["", "Client and servers share the same cores: wrk, ab and h2load take CPU the servers would "
           "otherwise have, so every absolute number here understates what a server with dedicated cores "
           "does.", ""]
    if tgt.get("managed"):
        st = tgt.get("exit_status")
        md += ["axon exited with status %s after SIGTERM%s." % (
            st, "" if st == 0 else " **(expected 0)**"), ""]
        if tgt.get("sanitizer_report"):
            md += ["**axon's log has a sanitizer report:**", "", "```", tgt["sanitizer_report"], "```", ""]
        for c in tgt.get("crashes", []):
            md += ["**axon died during `%s` (exit status %s); the scenarios after it ran on a fresh axon "
                   "(new data dir).%s** Its log ended with:" % (
                       c["during"], c["exit_status"],
                       " The log has a sanitizer report." if c.get("sanitizer_report") else ""),
                   "", "```", c["log_tail"].strip()[-2000:] or "(empty)", "```", ""]
        if tgt.get("died_before_stop"):
            md += ["**axon died during the run:**", "", "```", tgt.get("log_tail", ""), "```", ""]

    for sc in runs:
        if sc.status in ("ok", "error") and sc.module is not None:
            md += scenario_markdown(sc, ctx, outdir, basename, files)

    others = [sc for sc in runs if sc.status in ("unsupported", "planned")]
    if others:
        md += ["## Scenarios not measured", "", "| scenario | what | why |", "|---|---|---|"]
        for sc in others:
            md.append("| %s | %s | %s |" % (sc.name, sc.title, one_line(sc.reason)))
        md.append("")

    md += ["## How this was run", "", "```sh", " ".join(meta["argv"]), "```", ""]
    if tgt.get("config"):
        md += ["<details><summary>axon config</summary>", "", "```ini", tgt["config"].rstrip(), "```", "",
               "</details>", ""]
    if meta.get("baseline", {}).get("config"):
        md += ["<details><summary>nginx config</summary>", "", "```nginx",
               meta["baseline"]["config"].rstrip(), "```", "", "</details>", ""]
    md += ["<details><summary>Every command line (%d)</summary>" % len(ctx.commands), "", "```"]
    md += ["# %s\n%s" % (what, cmd) for what, cmd in ctx.commands]
    md += ["```", "", "</details>", ""]

    path = os.path.join(outdir, basename + ".md")
    # paths relative to the repository root: the report is committed and read elsewhere
    write_text(path, "\n".join(md).replace(ROOT + "/", "").replace(ROOT, "."))
    files.insert(0, path)

    if want_json:
        data = {"meta": meta, "commands": [{"what": w, "command": c} for w, c in ctx.commands], "scenarios": [
            {"name": sc.name, "title": sc.title, "status": sc.status, "reason": sc.reason, "rss": sc.rss,
             "summary": _jsonable(sc.summary), "results": sc.results} for sc in runs]}
        jpath = os.path.join(outdir, basename + ".json")
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        write_text(jpath, text.replace(ROOT + "/", "").replace(ROOT, "."))
        files.insert(1, jpath)
    return files


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
