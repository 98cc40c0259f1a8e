"""Benchmark a kpisat run at company scale, stage by stage, with peak memory per stage.

``python -m benchmarks.run_bench --scale 50 --out benchmarks/out`` (``make bench``)
generates the sample company at ``scale`` (cached under ``OUT/data/seed<S>-scale<X>/``,
so reruns skip generation), then runs every stage of ``benchmarks.stages`` in its own
process — load + validate, as-of view + derived tables, the pandas baseline of the
panel, one process per model, the full ``kpisat run`` and the report rendering — and
prints a table, also written to ``OUT/bench.json`` (``OUT/bench-scale<X>.json`` too).

``--scale 1`` is the CI-size run: its ``kpisat run`` stage runs on the repository's
sample company exactly as ``make report`` does (no ``--source``).

Peak RSS: a stage's own process high-water mark (``VmHWM``); for ``kpisat_run`` the
peak of the summed RSS of its process tree (runner + notebook kernel), sampled every
50 ms, and the largest single process (``getrusage``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.stages import MODEL_STAGES, ROOT, STAGES

#: Targets of the issue "Scale and robustness".
TARGETS = {"full_run_seconds_at_scale": 60.0, "full_run_peak_rss_mb_at_scale": 2048.0,
           "sample_run_seconds": 20.0, "model_fit_seconds": 5.0}
#: Company size the issue asks for, against what the generator gives.
SIZE_TARGETS = {"reps": 2000, "teams": 200, "customers": 200_000, "deals": 1_000_000,
                "surveys": 400_000, "complaints": 150_000, "quarters": 12}
SAMPLE_SEED, SAMPLE_SCALE = 7, 1.0


def _scale_label(scale: float) -> str:
    return f"{scale:g}"


# ---------------------------------------------------------------- generation (cached)
def generated_company(out: Path, seed: int, scale: float) -> tuple[Path, dict]:
    """The generated company for (seed, scale), generating it on the first call only."""
    folder = out / "data" / f"seed{seed}-scale{_scale_label(scale)}"
    marker = folder / "generated.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        return folder, {**info, "cached": True}
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    code = ("import json,sys,time;from analysis.sample import generate;"
            "t=time.perf_counter();i=generate(sys.argv[1],seed=int(sys.argv[2]),"
            "scale=float(sys.argv[3]));i['seconds']=time.perf_counter()-t;"
            "print(json.dumps(i))")
    peak = TreeSampler()
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp), str(seed), str(scale)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak.watch(proc.pid)
    stdout, _ = proc.communicate()
    peak.stop()
    if proc.returncode:
        raise SystemExit(f"generation failed (exit {proc.returncode})")
    info = json.loads(stdout.strip().splitlines()[-1])
    info.update(peak_rss_mb=round(peak.peak_mb, 1), out_dir=str(folder))
    (tmp / "generated.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)
    return folder, {**info, "cached": False}


# ---------------------------------------------------------------- measuring a process tree
class TreeSampler:
    """Peak of the summed RSS of a process and its descendants, sampled in a thread,
    and each process's own peak (``by_process``: a notebook kernel is named after its
    notebook, from the ``KPISAT_NOTEBOOK`` variable the runner gives it)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_mb = 0.0
        self.by_process: dict[str, float] = {}
        self._labels: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, pid: int) -> None:
        self._thread = threading.Thread(target=self._run, args=(pid,), daemon=True)
        self._thread.start()

    def _run(self, pid: int) -> None:
        import psutil

        try:
            root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    label = self._label(p)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += rss
                self.by_process[label] = max(self.by_process.get(label, 0.0), rss / 2**20)
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(self.interval)

    def _label(self, p) -> str:
        """The notebook a kernel runs, else the process name (same names share a peak).

        Only a notebook label is kept: a kernel seen between fork and exec still has the
        runner's name and environment, and is named again on the next sample."""
        if p.pid not in self._labels:
            from analysis.findings import WRITER_ENV

            notebook = p.environ().get(WRITER_ENV)
            if not notebook:  # a child of the runner with its name: its prepare child
                parent = p.parent()
                child = parent is not None and parent.name() == p.name()
                return p.name() + (" (child)" if child else "")
            self._labels[p.pid] = notebook
        return self._labels[p.pid]

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def run_stage(stage: str, data: Path, work: Path, *, profile: bool, sample: bool,
              timeout: float, in_process: bool = False) -> dict:
    """Run one stage in a fresh process; its record plus wall time and load average.

    A stage still running after ``timeout`` seconds is killed with its process group
    (notebook kernels included) and recorded as timed out, with the peak RSS seen.
    ``in_process`` (smoke tests only) runs it in this process: quicker, but a stage's
    peak RSS is then the high-water mark of everything before it too.
    """
    cmd = [sys.executable, "-m", "benchmarks.stages", stage, "--data", str(data),
           "--work", str(work)]
    if profile:
        cmd.append("--profile")
    if sample:
        cmd.append("--sample")
    result_file = work / "results" / f"{stage}.json"
    result_file.unlink(missing_ok=True)
    load = os.getloadavg()
    if in_process:  # smoke test: no start-up per stage, but peaks only ever grow
        from benchmarks import stages as st

        t0 = time.perf_counter()
        rec = st.run_stage(stage, data.resolve(), work.resolve(), sample=sample)
        return {**rec, "ok": True, "in_process": True,
                "wall_seconds": round(time.perf_counter() - t0, 2),
                "loadavg_at_start": [round(x, 2) for x in load]}
    sampler = TreeSampler()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    sampler.watch(proc.pid)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        sampler.stop()
        print(f"  {stage}: TIMED OUT after {timeout:g} s", file=sys.stderr)
        return {"stage": stage, "ok": False, "timed_out": True, "seconds": None,
                "timeout_seconds": timeout, "wall_seconds": round(time.perf_counter() - t0, 2),
                "peak_rss_mb": round(sampler.peak_mb, 1), "tree_peak_rss_mb": round(sampler.peak_mb, 1),
                "loadavg_at_start": [round(x, 2) for x in load]}
    sampler.stop()
    wall = time.perf_counter() - t0
    if proc.returncode or not result_file.exists():
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        print(f"  {stage}: FAILED (exit {proc.returncode})\n{tail}", file=sys.stderr)
        return {"stage": stage, "ok": False, "error": tail[-1500:], "wall_seconds": round(wall, 2),
                "loadavg_at_start": [round(x, 2) for x in load]}
    rec = json.loads(result_file.read_text())
    rec.update(ok=True, wall_seconds=round(wall, 2), tree_peak_rss_mb=round(sampler.peak_mb, 1),
               process_peak_rss_mb={k: round(v) for k, v in sampler.by_process.items()},
               loadavg_at_start=[round(x, 2) for x in load])
    if stage == "kpisat_run":  # several processes at once: the tree's summed peak counts
        rec["peak_rss_mb"] = max(rec["tree_peak_rss_mb"], rec.get("max_process_rss_mb", 0.0))
    return rec


def code_state() -> dict:
    """The commit measured and the product files changed on top of it (numbers from a
    dirty tree describe that tree, not the commit)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.rstrip("\n")  # porcelain lines start with a space

    changed = [line[3:] for line in git("status", "--porcelain", "--", "analysis",
                                        "notebooks").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip(), "uncommitted_product_files": changed}


# ---------------------------------------------------------------- verdicts and table
def company_size(gen: dict, meta: dict) -> dict:
    rows = gen.get("rows", {})
    have = {"reps": meta.get("reps"), "teams": meta.get("teams"), "customers": rows.get("customers"),
            "deals": rows.get("deals"), "surveys": rows.get("surveys"),
            "complaints": rows.get("complaints"), "quarters": meta.get("panel_quarters")}
    return {k: {"have": have[k], "want": want,
                "met": have[k] is not None and have[k] >= want,
                "shortfall": None if have[k] is None else max(0, want - have[k])}
            for k, want in SIZE_TARGETS.items()}


def verdicts(stages: dict, scale: float) -> dict:
    out = {}
    run = stages.get("kpisat_run", {})
    if run.get("ok") or run.get("timed_out"):
        seconds = run["seconds"] if run.get("ok") else run["timeout_seconds"]
        if scale == SAMPLE_SCALE:
            out["sample_run_seconds"] = _verdict(seconds, TARGETS["sample_run_seconds"])
        else:
            out["full_run_seconds_at_scale"] = _verdict(
                seconds, TARGETS["full_run_seconds_at_scale"])
            out["full_run_peak_rss_mb_at_scale"] = _verdict(
                run["peak_rss_mb"], TARGETS["full_run_peak_rss_mb_at_scale"])
        if run.get("timed_out"):  # a lower bound only
            for v in out.values():
                v.update(met=False, note=f"timed out: at least {seconds:g} s")
    fits = {f"{s}.{step}": sec for s in MODEL_STAGES if stages.get(s, {}).get("ok")
            for step, sec in stages[s]["steps"].items() if step.startswith("fit_")}
    fits.update({f"{s} (timed out)": stages[s]["timeout_seconds"] for s in MODEL_STAGES
                 if stages.get(s, {}).get("timed_out")})
    if fits:
        worst = max(fits, key=fits.get)
        out["model_fit_seconds"] = {**_verdict(fits[worst], TARGETS["model_fit_seconds"]),
                                    "worst": worst,
                                    "over": sorted(k for k, v in fits.items()
                                                   if v > TARGETS["model_fit_seconds"])}
    return out


def _verdict(value: float, limit: float) -> dict:
    return {"value": round(value, 2), "limit": limit, "met": value < limit}


def print_table(report: dict) -> None:
    print(f"\nkpisat benchmark: scale {report['scale']:g}, seed {report['seed']}, "
          f"{report['cpus']} CPUs, loadavg {report['loadavg_start']} -> {report['loadavg_end']}")
    gen = report["generation"]
    print(f"generation: {gen['seconds']:.1f} s{' (cached)' if gen['cached'] else ''}, "
          f"peak {gen.get('peak_rss_mb', 0):.0f} MiB")
    head = f"{'stage':<18}{'seconds':>9}{'peak RSS MiB':>14}{'wall s':>8}  detail"
    print(head + "\n" + "-" * len(head))
    for name, rec in report["stages"].items():
        if rec.get("timed_out"):
            print(f"{name:<18}{'>' + format(rec['timeout_seconds'], 'g'):>9}"
                  f"{rec['peak_rss_mb']:>14.0f}{rec['wall_seconds']:>8.1f}  TIMED OUT (killed)")
            continue
        if not rec.get("ok"):
            print(f"{name:<18}{'FAILED':>9}{'':>14}{rec['wall_seconds']:>8.1f}  "
                  f"{rec['error'].splitlines()[-1][:150] if rec.get('error') else ''}")
            continue
        steps = ", ".join(f"{k} {v:.2f}" for k, v in rec["steps"].items() if len(rec["steps"]) > 1)
        extra = ""
        if name == "baseline_panel":
            extra = (f"pandas/SQL = {rec['ratio_baseline_over_product']:.2f}x, "
                     f"equal={rec['equal']}; ")
        if name == "kpisat_run":
            kernels = {k: v for k, v in rec.get("process_peak_rss_mb", {}).items()
                       if k[:2].isdigit()}
            extra = (f"max single process {rec['max_process_rss_mb']:.0f} MiB; "
                     + "".join(f"{k} {v} MiB; " for k, v in sorted(kernels.items())))
        print(f"{name:<18}{rec['seconds']:>9.2f}{rec['peak_rss_mb']:>14.0f}"
              f"{rec['wall_seconds']:>8.1f}  {extra}{steps}")
    print(f"{'stages total':<18}{report['stages_seconds_total']:>9.2f}"
          f"{report['stages_peak_rss_mb_max']:>14.0f}")
    print(f"benchmark wall time {report['wall_seconds']:.1f} s")
    if report.get("company_size"):
        short = [f"{k} {v['have']} < {v['want']}" for k, v in report["company_size"].items()
                 if not v["met"]]
        sizes = ", ".join(f"{k} {v['have']}" for k, v in report["company_size"].items())
        print(f"company: {sizes}" + (f"; short of target: {'; '.join(short)}" if short else
                                     "; every size target met"))
    for key, v in report["targets"].items():
        print(f"target {key}: {v['value']} vs < {v['limit']} -> {'met' if v['met'] else 'MISSED'}"
              + (f" (worst {v['worst']}; over: {', '.join(v['over']) or 'none'})"
                 if "worst" in v else ""))


# ---------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=50.0,
                   help="size multiplier of the generated company (1 = the CI sample; 50 "
                        "= about 244k customers and 1.1M deals)")
    p.add_argument("--seed", type=int, default=SAMPLE_SEED, help="generator seed (default 7)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out",
                   help="output folder: data cache, work files, bench.json")
    p.add_argument("--skip", action="append", default=[], choices=STAGES, metavar="STAGE",
                   help=f"skip a stage (repeatable); stages: {', '.join(STAGES)}")
    p.add_argument("--profile", action="append", default=[], metavar="STAGE",
                   help="run STAGE under cProfile (OUT/work/.../profiles/STAGE.txt); 'all' "
                        "for every stage but kpisat_run")
    p.add_argument("--stage-timeout", type=float, default=1800, metavar="S",
                   help="kill a stage still running after S seconds (default 1800)")
    p.add_argument("--in-process", action="store_true",
                   help="run the stages in this process (smoke test: fast, but per-stage "
                        "peak RSS is not honest and there is no timeout)")
    a = p.parse_args(argv)
    if a.scale <= 0:
        p.error("--scale must be positive")
    out = a.out.resolve()
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    data, gen = generated_company(out, a.seed, a.scale)
    work = out / "work" / data.name
    work.mkdir(parents=True, exist_ok=True)
    for leftover in ("run_folder.txt", "meta.json"):
        (work / leftover).unlink(missing_ok=True)
    sample = a.scale == SAMPLE_SCALE and a.seed == SAMPLE_SEED
    stages = {}
    for stage in STAGES:
        if stage in a.skip:
            continue
        profile = stage != "kpisat_run" and (stage in a.profile or "all" in a.profile)
        print(f"  {stage} ...", file=sys.stderr, flush=True)
        stages[stage] = run_stage(stage, data, work, profile=profile,
                                  sample=sample and stage == "kpisat_run",
                                  timeout=a.stage_timeout, in_process=a.in_process)
        if stage == "load_validate" and not stages[stage]["ok"]:
            break  # nothing later has its inputs
    meta = json.loads((work / "meta.json").read_text()) if (work / "meta.json").exists() else {}
    meta["panel_quarters"] = stages.get("asof_derived", {}).get("panel_quarters")
    ok = [r for r in stages.values() if r.get("ok")]
    report = {
        "scale": a.scale, "seed": a.seed, "created": datetime.now(timezone.utc).isoformat(),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in load_start], "code": code_state(),
        "stage_timeout": a.stage_timeout, "in_process": a.in_process, "generation": gen,
        "rows_read": meta.get("rows_read", {}), "company_size": company_size(gen, meta),
        "stages": stages,
        "stages_seconds_total": round(sum(r["seconds"] for r in ok
                                          if r["stage"] not in ("kpisat_run", "baseline_panel")), 2),
        "stages_peak_rss_mb_max": max((r["peak_rss_mb"] for r in ok), default=0.0),
        "targets": verdicts(stages, a.scale),
        "all_ok": len(ok) == len(stages),
    }
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str)
    (out / "bench.json").write_text(text)
    (out / f"bench-scale{_scale_label(a.scale)}.json").write_text(text)
    print_table(report)
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
