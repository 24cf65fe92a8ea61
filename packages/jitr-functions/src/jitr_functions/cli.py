"""The ``jitr`` command: serve, demo, plugins, bundle, render-startup-script, status, doctor, github-app."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from jitr_core.errors import JitrError
from jitr_core.settings import Settings

if TYPE_CHECKING:
    from jitr_core.backend import Backend
    from jitr_core.plugins import JitrPluginManager

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080  # where ``jitr serve`` listens unless told
MAX_PORT = 65535


def _settings(path: str | None, default_broker_url: str = "") -> Settings:
    if path:
        return Settings.from_toml(path, default_broker_url)
    return Settings.from_env(default_broker_url=default_broker_url)


def _serve_settings(config: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Settings:
    """The settings of ``jitr serve``: local VMs pull their JIT config from its own broker unless
    the settings name another broker (or the VMs are not local: they may not reach this one)."""
    from .local import own_broker_url

    settings = _settings(config)
    if settings.broker_url or settings.provider("vm") != "embedded":
        return settings
    return _settings(config, own_broker_url(host, port))


def cmd_plugins(args: argparse.Namespace) -> int:
    from jitr_core.plugins import create_plugin_manager, list_plugins

    infos = list_plugins(create_plugin_manager())
    broken = any(info.error for info in infos)
    if args.json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return 1 if broken else 0
    width = max(len(info.name) for info in infos)
    for info in infos:
        origin = f"{info.distribution} {info.version}".strip() or "(registered in code)"
        tag = " [built-in]" if info.builtin else " [BROKEN]" if info.error else ""
        print(f"{info.name:<{width}}  {origin}{tag}")
        if info.error:
            print(f"{'':<{width}}  failed to load: {info.error}")
        else:
            print(f"{'':<{width}}  hooks: {', '.join(info.hooks)}")
    return 1 if broken else 0


def cmd_render(args: argparse.Namespace) -> int:
    from jitr_core.backend import Backend
    from jitr_core.model import runner_name_for
    from jitr_core.plugins import create_plugin_manager
    from jitr_core.secret import Secret
    from jitr_core.startup import ScriptContext

    settings = _serve_settings(args.config)  # the script ``jitr serve`` (default address) gives its VMs
    pool = settings.pool(args.pool)
    provider = args.provider or settings.provider("vm")
    pm = create_plugin_manager()
    _check_vm_provider(pm, provider)
    if args.warm:
        from jitr_core.services.warm import warm_name, warm_script_context

        if not pool.keeps_warm:
            raise JitrError(f"pool {pool.name!r} keeps no warm VMs (warm, warm_windows): its VMs start cold")
        context = warm_script_context(settings, pool, warm_name(pool.name), provider)
        sys.stdout.write(Backend(pm, settings).render_startup_script(context))
        return 0
    context = ScriptContext(
        runner_name_for(pool.name, 0, 1),
        pool,
        provider,
        Secret("" if pool.handoff == "broker" else "UFJFVklFVy1OT1QtQS1SRUFMLUNPTkZJRw=="),
        settings.runner_version,
        pool.max_lifetime_s,
        handoff=pool.handoff,
        broker_url=settings.broker_url,
        broker_audience=settings.broker_audience,
        broker_deadline_s=settings.boot_timeout_s,
    )
    sys.stdout.write(Backend(pm, settings).render_startup_script(context))
    return 0


def _check_vm_provider(pm: JitrPluginManager, provider: str) -> None:
    """Refuse a VM provider no registered plugin launches VMs for: core's steps render for any name,
    so a misspelt one would print a script lacking its provider's steps as if it were right. A VM
    provider's plugin is named like it (``aws``, ``gcp``, ``embedded``), as ``JITR_DISABLE_PLUGINS``
    names it."""
    from jitr_core.plugins import describe_broken, disabled_plugins

    known = sorted(impl.plugin_name for impl in pm.hook.jitr_launch_vm.get_hookimpls())
    if provider in known:
        return
    disabled = provider in disabled_plugins(pm)
    broken = describe_broken(pm)
    raise JitrError(
        f"no registered plugin provides VMs as {provider!r}"
        + (f": the plugin for {provider!r} is disabled by JITR_DISABLE_PLUGINS" if disabled else "")
        + f"; the registered VM providers are {', '.join(map(repr, known)) or 'none'}"
        + (f"; {broken}" if broken else "")
    )


def cmd_status(args: argparse.Namespace) -> int:
    """Only reads: the embedded state is opened read-only. Where there is none yet (nothing has run
    with these settings) that is said on stderr, nothing is created, and the answer is the one of an
    empty deployment: nothing listed, exit status 0 (1 for ``--job``, as for any job without a record)."""
    from jitr_core.backend import Backend
    from jitr_core.embedded.instance import read_only
    from jitr_core.errors import NoStateError
    from jitr_core.plugins import create_plugin_manager
    from jitr_core.services.stats import pool_stats

    settings = _settings(args.config)
    backend = Backend(create_plugin_manager(), settings)
    try:
        with read_only():
            if args.job is not None:
                return _status_job(backend, args.job, args.json)
            if args.pools:
                pools = pool_stats(backend, time.time(), args.window, [pool.name for pool in settings.pools])
                return _status_pools(pools, args.window, args.json)
            return _status_listing(_listing(backend), args.json)
    except NoStateError as exc:
        print(f"jitr: {exc}", file=sys.stderr)
        if args.job is not None:
            return 1
        if args.pools:
            return _status_pools({}, args.window, args.json)
        return _status_listing({"runners": [], "jobs": [], "warm_vms": [], "dead_letters": []}, args.json)


def _listing(backend: Backend) -> dict[str, Any]:
    """The runners in flight, the open jobs, the warm VMs and the dead letters, as ``--json`` shows them."""
    from jitr_core.messages import JOBS_QUEUE, LIFECYCLE_QUEUE
    from jitr_core.model import IN_FLIGHT_RUNNER_STATES, OPEN_JOB_STATES, RecordQuery
    from jitr_core.services.warm import WARM, WARM_STATES

    runners = [r for s in IN_FLIGHT_RUNNER_STATES for r in backend.query_all(RecordQuery("runner", s))]
    jobs = [r for s in OPEN_JOB_STATES for r in backend.query_all(RecordQuery("job", s))]
    warm = [r for s in WARM_STATES for r in backend.query_all(RecordQuery(WARM, s))]
    return {
        "runners": [
            {
                "name": r.key,
                "state": r.state,
                "pool": r.pool,
                "job_id": r.data.get("job_id"),
                "vm_id": r.data.get("vm_id"),
            }
            for r in runners
        ],
        "jobs": [
            {
                "job_id": int(r.key),
                "state": r.state,
                "pool": r.pool,
                "repository": r.data.get("repository"),
                "attempt": r.data.get("attempt"),
                "runner": r.data.get("launched_runner"),
            }
            for r in jobs
        ],
        "warm_vms": [
            {
                "name": r.key,
                "state": r.state,
                "pool": r.pool,
                "vm_id": r.data.get("vm_id"),
                "runner": r.data.get("runner_name"),
            }
            for r in warm
        ],
        "dead_letters": [
            {"queue": queue, "job_id": m.attributes.get("job_id"), "reason": m.attributes.get("dead_letter_reason", "")}
            for queue in (JOBS_QUEUE, LIFECYCLE_QUEUE)
            for m in backend.dead_letters(queue)
        ],
    }


def _status_listing(status: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"{len(status['jobs'])} open jobs, {len(status['runners'])} runners in flight, "
        f"{len(status['dead_letters'])} dead letters"
    )
    for runner in map(_printable, status["runners"]):
        print(f"  runner {runner['name']:<40} {runner['state']:<9} pool={runner['pool']} vm={runner['vm_id']}")
    for job in map(_printable, status["jobs"]):
        print(f"  job {job['job_id']:<12} {job['state']:<9} {job['repository']} attempt={job['attempt']}")
    for vm in map(_printable, status["warm_vms"]):
        print(f"  warm vm {vm['name']:<39} {vm['state']:<9} pool={vm['pool']} vm={vm['vm_id']} runner={vm['runner']}")
    for letter in map(_printable, status["dead_letters"]):
        print(f"  dead letter on {letter['queue']:<9} job={letter['job_id']} {letter['reason']}")
    return 0


def _status_job(backend: Any, job_id: int, as_json: bool) -> int:
    from jitr_core.services.stats import job_timeline

    job = job_timeline(backend, job_id)
    if job is None:
        print(f"jitr: no record of job {job_id} (unknown, or finished longer ago than finished_ttl_s)", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(job, indent=2))
        return 0
    head = _printable({k: v for k, v in job.items() if k != "timeline"})
    print(
        f"job {head['job_id']} {head['state']} {head['repository']} pool={head['pool']} "
        f"attempt={head['attempt']} runner={head['runner']}"
    )
    if job["timeline_dropped"]:
        print(f"  ({head['timeline_dropped']} earlier steps dropped)")
    timeline = job["timeline"]
    start = float(timeline[0]["t"]) if timeline else 0.0
    for entry in timeline:
        at = float(entry.get("t", 0.0))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
        facts = _printable({k: v for k, v in entry.items() if k not in ("t", "event")})
        event = _printable({"event": entry.get("event", "")})["event"]
        offset = f"+{at - start:.3f}s"
        print(f"  {stamp} {offset:>10} {event:<12} {' '.join(f'{k}={v}' for k, v in facts.items())}".rstrip())
    return 0


def _status_pools(pools: dict[str, dict[str, Any]], window_s: float, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"window_s": window_s, "pools": pools}, indent=2))
        return 0
    print(f"pools over the last {_duration(window_s)}")
    for name, figures in pools.items():
        states = ", ".join(f"{state} {count}" for state, count in figures["states"].items())
        launches = figures["launches"]
        print(f"  {_printable({'pool': name})['pool']}: {figures['jobs']} jobs" + (f" ({states})" if states else ""))
        print(f"    queue time   {_latency(figures['queue_ms'])}")
        print(f"    boot time    {_latency(figures['boot_ms'])}")
        print(
            f"    launches     {launches['spot'] + launches['on_demand']}: spot {launches['spot']}, "
            f"on-demand {launches['on_demand']} ({figures['spot_share']:.0%} spot); "
            f"{figures['vms_in_flight']} VMs in flight"
        )
        for title, counts in (("launch failures", figures["launch_failures"]), ("requeues", figures["requeues"])):
            if counts:
                listed = ", ".join(f"{reason} {count}" for reason, count in _printable(counts).items())
                print(f"    {title:<12} {listed}")
    return 0


def _latency(ms: dict[str, float]) -> str:
    return f"p50 {ms['p50'] / 1000:.1f} s, p95 {ms['p95'] / 1000:.1f} s, p99 {ms['p99'] / 1000:.1f} s"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _window(text: str) -> float:
    """A window such as ``90s``, ``30m``, ``1h`` or ``2d`` (a bare number is seconds), in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30m, 1h or 2d, found {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0, found {text}")
    return value


def _printable(row: dict[str, Any]) -> dict[str, str]:
    """A status row for the terminal: names come from payloads, so control characters are escaped."""
    return {key: "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(value)) for key, value in row.items()}


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import build_app
    from .local import LocalRuntime, Workers, http_limits

    app = build_app(_serve_settings(args.config, args.host, args.port))
    http = http_limits(
        app.settings,
        threads=args.http_threads,
        connections=args.http_connections,
        backlog=args.http_backlog,
        request_timeout_s=args.http_request_timeout,
        idle_timeout_s=args.http_idle_timeout,
    )
    workers = Workers.from_settings(app.settings, args.workers)
    runtime = LocalRuntime(app, host=args.host, port=args.port, workers=workers, http=http).start()
    print(f"jitr serving webhooks at {runtime.url}/webhook", file=sys.stderr)
    if app.settings.broker_url:
        print(f"runner VMs get their JIT config from the broker at {app.settings.broker_url}", file=sys.stderr)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    runtime.stop()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    checks = run_checks(lambda: _settings(args.config))
    if args.json:
        print(json.dumps([asdict(check) for check in checks], indent=2))
    else:
        for check in checks:
            print(f"{'ok  ' if check.ok else 'FAIL'} {check.name:<30} {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(jobs=args.jobs, as_json=args.json, faults=args.faults, seed=args.seed)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be a finite number more than 0, found {text}")
        return value

    return parse


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to {MAX_PORT}, found {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    from .versions import VersionAction

    p = argparse.ArgumentParser(prog="jitr", description="On-demand single-use GitHub Actions runners.")
    p.add_argument("--version", action=VersionAction)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("plugins", help="list registered plugins and their hooks")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_plugins)
    s = sub.add_parser("render-startup-script", help="preview a pool's VM startup script")
    s.add_argument("--pool", required=True)
    s.add_argument("--config", help="TOML settings file (default: JITR_* environment)")
    s.add_argument(
        "--provider", help="render for this VM provider instead of the configured one (a registered plugin's name)"
    )
    s.add_argument("--warm", action="store_true", help="the script of one of the pool's warm VMs (docs/warm-pools.md)")
    s.set_defaults(func=cmd_render)
    s = sub.add_parser(
        "status",
        help="in-flight jobs and runners from the state store",
        description="Lists the open jobs, the runners in flight, the warm VMs and the dead letters. It only reads "
        "the state: where there is none yet (nothing has run with these settings) it says so, creates none and "
        "lists nothing (exit status 0; 1 with --job).",
    )
    s.add_argument("--config")
    s.add_argument("--json", action="store_true")
    shown = s.add_mutually_exclusive_group()
    shown.add_argument("--job", type=int, metavar="ID", help="one job's timeline instead")
    shown.add_argument("--pools", action="store_true", help="per-pool figures over --window instead")
    s.add_argument("--window", type=_window, default=3600.0, help="for --pools: 30m, 1h (default), 2d, ...")
    s.set_defaults(func=cmd_status)
    s = sub.add_parser("serve", help="run the control plane on this machine (embedded backend)")
    s.add_argument("--config", help="TOML settings file (default: JITR_* environment)")
    s.add_argument("--host", default=DEFAULT_HOST)
    s.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"0: any free port (default {DEFAULT_PORT})")
    s.add_argument(
        "--workers",
        type=_positive(int),
        help="worker threads per queue (default: [serve] *_workers, sized from the CPUs)",
    )
    s.add_argument("--http-threads", type=_positive(int), help="threads answering requests (default 4)")
    s.add_argument("--http-connections", type=_positive(int), help="open connections at most (default 1000)")
    s.add_argument("--http-backlog", type=_positive(int), help="listen backlog (default 1024)")
    s.add_argument(
        "--http-request-timeout", type=_positive(float), help="seconds for a whole request to arrive (default 15)"
    )
    s.add_argument("--http-idle-timeout", type=_positive(float), help="seconds an idle connection is kept (default 30)")
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("demo", help="run the control plane against a simulated GitHub and show it work")
    s.add_argument("--jobs", type=int, default=36)
    s.add_argument("--json", action="store_true", help="print one JSON summary instead of live progress")
    s.add_argument("--faults", action="store_true", help="inject lost, duplicated, reordered webhooks and failures")
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser(
        "doctor",
        help="check settings, plugins, providers, secrets and GitHub access",
        description="Checks each part of a deployment without changing it. Where there is no state yet, none is "
        "created and the store, vms and queue checks pass saying so (`jitr serve` creates it).",
    )
    s.add_argument("--config", help="TOML settings file (default: JITR_* environment)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_doctor)
    from . import github_app

    github_app.add_arguments(sub.add_parser("github-app", help="create jitr's GitHub App and store its secrets"))
    s = sub.add_parser("bundle", help="build the deployable bundle of a cloud's functions")
    targets = s.add_subparsers(dest="target", required=True)
    from . import bundle_aws

    bundle_aws.add_arguments(targets.add_parser("aws", help="a Lambda zip: jitr, its plugins and dependencies"))
    from . import bundle_gcp

    bundle_gcp.add_arguments(targets.add_parser("gcp", help="a Cloud Run functions source directory with wheels"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except JitrError as exc:
        print(f"jitr: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
