"""The ``conveyor`` command: run workers, enqueue jobs and inspect or manage them."""

from __future__ import annotations

import argparse
import ast
import asyncio
import datetime as dt
import importlib
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from conveyor.app import Conveyor
from conveyor.brokers.base import Broker, Counts, JobFilter
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    JobNotFound,
    MissingDependency,
    UnknownTask,
)
from conveyor.job import FINISHED, JobRecord, Status

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(message)s"


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


def _conveyor_names(source: Path) -> list[str]:
    """The module-level names assigned ``Conveyor(...)`` in ``source``, read without running it."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    names = []
    value: ast.expr | None
    for node in tree.body:
        if isinstance(node, ast.Assign):
            value, targets = node.value, node.targets
        elif isinstance(node, ast.AnnAssign):
            value, targets = node.value, [node.target]
        else:
            continue
        callee = value.func if isinstance(value, ast.Call) else None
        called = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
        if called == "Conveyor":
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _app_path_for_file(path: str, attr: str) -> str | None:
    """``module:attribute`` for an app given as a file (``tasks.py``, ``./pkg/tasks.py``).

    The file is parsed, not imported: importing runs its top level, which may do anything.
    """
    if not path.endswith(".py") and "/" not in path and os.sep not in path:
        return None
    relative = os.path.relpath(os.path.normpath(path.removesuffix(".py")))
    if relative.startswith(".."):
        relative = os.path.basename(relative)  # outside here: run from its own directory
    module = relative.replace(os.sep, ".").replace("/", ".")
    if attr:
        return f"{module}:{attr}"
    names = _conveyor_names(Path(path.removesuffix(".py") + ".py"))
    if len(names) == 1:
        return f"{module}:{names[0]}"
    return f"{module}:ATTRIBUTE (the name of its Conveyor app)" if names else f"{module}:app"


def load_app(path: str | None) -> Conveyor:
    """Import ``module:attribute`` (attribute defaults to ``app``) and return the Conveyor."""
    path = path or os.environ.get("CONVEYOR_APP")
    if not path:
        url = os.environ.get("CONVEYOR_URL")
        return Conveyor(url)
    module_name, _, attr = path.partition(":")
    suggestion = _app_path_for_file(module_name, attr)
    if suggestion is not None:
        raise UsageError(
            f"the app is a module path, not a file: did you mean {suggestion!r}? "
            "(run from the directory the module is imported from)"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import app module {module_name!r}: {exc}") from exc
    app = getattr(module, attr or "app", None)
    if not isinstance(app, Conveyor):
        raise UsageError(
            f"{path!r} is not a Conveyor app: module {module_name!r} has no Conveyor "
            f"attribute {attr or 'app'!r}"
        )
    return app


def app_for(args: argparse.Namespace) -> Conveyor:
    """The app a command works on: ``--app``, else ``--url``, else the environment."""
    if args.url:
        return Conveyor(args.url)
    return load_app(args.app)


def existing(app: Conveyor) -> Conveyor:
    """``app``, once its store is known to exist, for the commands that only read.

    SQLite creates a missing database file on connect, and a relative URL names a file
    relative to where the command runs: run from another directory, a command would create a
    new empty database there and report no jobs. Those commands refuse instead, saying where
    they looked.
    """
    from conveyor.brokers.sqlite import SQLiteBroker

    broker = app.broker
    if isinstance(broker, SQLiteBroker) and not os.path.exists(broker.path):
        raise ConveyorError(
            f"no Conveyor database at {broker.path} (run from the directory of your app, "
            f"or give --url sqlite:///{broker.path})"
        )
    return app


def run_on_broker(app: Conveyor, fn: Callable[[Broker], Awaitable[T]]) -> T:
    """Connect the app's broker, run ``fn`` on it, close it."""

    async def go() -> T:
        broker = app.broker.copy()
        await broker.connect()
        try:
            return await fn(broker)
        finally:
            await broker.close()

    return asyncio.run(go())


def parse_json(text: str, what: str, kind: type) -> Any:
    """Parse a JSON option, with an error naming the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {text}"
        ) from None
    if not isinstance(value, kind):
        raise UsageError(f"{what} must be a JSON {kind.__name__}, got: {text}")
    return value


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="milliseconds")


def _to_json(record: JobRecord) -> str:
    return msgspec.json.encode(record).decode()


def show_job(record: JobRecord, as_json: bool) -> None:
    """Print one job in full."""
    if as_json:
        print(_to_json(record))
        return
    rows = [
        ("id", record.id),
        ("task", record.task),
        (
            "status",
            record.status.value + (" (cancel requested)" if record.cancel_requested else ""),
        ),
        ("queue", record.queue),
        ("priority", str(record.priority)),
        ("attempts", f"{record.attempts}/{record.max_attempts}"),
        ("losses", f"{record.losses} (worker lost while running it; not an attempt)"),
        ("args", json.dumps(record.args)),
        ("kwargs", json.dumps(record.kwargs)),
        ("key", record.key or "-"),
        ("created", _when(record.created_at)),
        ("eta", _when(record.eta)),
        ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at)),
        ("worker", record.worker or "-"),
    ]
    if record.status is Status.SUCCEEDED:
        rows.append(("result", json.dumps(record.result)))
    if record.error is not None:
        rows.append(("error", f"{record.error.type}: {record.error.message}"))
    for name, value in rows:
        print(f"{name:>9}  {value}")
    if record.error is not None and record.error.traceback:
        print()
        print(record.error.traceback.rstrip())


def show_table(records: Sequence[JobRecord], as_json: bool) -> None:
    """Print jobs one a line."""
    if as_json:
        print("[" + ",".join(_to_json(r) for r in records) + "]")
        return
    print(f"{'ID':<26}  {'STATUS':<9}  {'QUEUE':<10}  {'ATT':>5}  {'CREATED':<23}  TASK / ERROR")
    for r in records:
        err = f"  {r.error.type}: {r.error.message}"[:80] if r.error else ""
        print(
            f"{r.id:<26}  {r.status.value:<9}  {r.queue:<10}  {r.attempts:>2}/{r.max_attempts:<2}"
            f"  {_when(r.created_at):<23}  {r.task}{err}"
        )


# -- commands ------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run a worker, or a supervisor of several worker processes."""
    from conveyor.process import catch_early_stop, run_worker
    from conveyor.supervisor import child_command, supervise
    from conveyor.worker import Worker

    catch_early_stop()
    if args.processes < 1:
        raise UsageError(f"--processes must be at least 1, got {args.processes}")
    if not (args.target or os.environ.get("CONVEYOR_APP")):
        # Without the app a worker knows no task: it would start and fail every job it claims.
        raise UsageError(
            "conveyor worker needs the app whose tasks it runs: give it as module:attribute "
            "(conveyor worker tasks:app) or set $CONVEYOR_APP"
        )
    app = load_app(args.target)
    if args.processes > 1:
        # child_command appends `--processes 1`; argparse keeps an option's last value,
        # so whatever form the user gave (-p 2, --processes=2) is overridden in the child.
        return supervise(child_command(argv), args.processes)
    worker = Worker(
        app,
        queues=[q.strip() for q in args.queues.split(",")],
        concurrency=args.concurrency,
        lease=args.lease,
        burst=args.burst,
        grace=args.grace,
    )
    code = run_worker(worker)
    # Stopped, and about to exit: a SIGTERM from now on (the second of a pair, an init
    # system's) would end the interpreter's teardown as killed, exit 143, not with ``code``.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return code


def parse_eta(text: str | None) -> float | dt.datetime | None:
    """``--eta``: Unix epoch seconds, or an ISO-8601 time (local time unless it has an offset)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--eta must be an ISO-8601 time (2030-01-31T09:00, +02:00 or Z for a zone) "
            f"or Unix epoch seconds, got {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def _check_known(app: Conveyor, name: str) -> None:
    """Refuse a task the app does not register, as the HTTP API does."""
    if name in app.tasks:
        return
    known = ", ".join(sorted(app.tasks)) or "none"
    raise UnknownTask(
        f"unknown task {name!r}: the app registers no task by that name (its tasks: {known}); "
        "pass --allow-unknown to enqueue it for a worker of another app"
    )


def cmd_enqueue(args: argparse.Namespace) -> int:
    """Enqueue one job by task name and print its id."""
    eta = parse_eta(args.eta)
    positional = parse_json(args.args, "--args", list)
    named = parse_json(args.kwargs, "--kwargs", dict)
    app = app_for(args)
    try:
        if not args.url and not args.allow_unknown and (args.app or os.environ.get("CONVEYOR_APP")):
            _check_known(app, args.name)
        task = app.tasks.get(args.name)
        if task is not None:
            task.check_types(positional, named)
        job = app.enqueue(
            args.name,
            args=positional,
            kwargs=named,
            queue=args.queue,
            priority=args.priority,
            delay=args.delay,
            eta=eta,
            key=args.key,
            retries=args.retries,
            timeout=args.timeout,
        )
        print(_to_json(job.record) if args.json else job.id)
    finally:
        app.close()
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    """Show one job."""
    record = run_on_broker(existing(app_for(args)), lambda b: b.get(args.id))
    if record is None:
        raise JobNotFound(f"no job with id {args.id!r}")
    show_job(record, args.json)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """List jobs, newest first."""
    where = JobFilter(
        status=Status(args.status) if args.status else None,
        queue=args.queue,
        task=args.task,
        limit=args.limit,
    )
    show_table(run_on_broker(existing(app_for(args)), lambda b: b.list(where)), args.json)
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    """Show how many jobs each queue holds, per status; or pause or resume one queue."""
    if args.action is not None:
        return _pause_or_resume(args)
    if args.name is not None:
        raise UsageError(f"queues: {args.name!r} is not pause or resume")

    async def look(broker: Broker) -> tuple[Counts, list[str]]:
        return await broker.counts(), await broker.paused()

    counts, paused = run_on_broker(existing(app_for(args)), look)
    if args.json:
        print(json.dumps({q: {s.value: n for s, n in c.items()} for q, c in counts.items()}))
        return 0
    statuses = list(Status)
    print(f"{'QUEUE':<16}" + "".join(f"{s.value:>11}" for s in statuses) + "  PAUSED")
    for queue in sorted(set(counts) | set(paused)):
        per = counts.get(queue, {})
        mark = "  yes" if queue in paused else ""
        print(f"{queue:<16}" + "".join(f"{per.get(s, 0):>11}" for s in statuses) + mark)
    if not counts and not paused:
        print("(no jobs)")
    return 0


def _pause_or_resume(args: argparse.Namespace) -> int:
    if not args.name:
        raise UsageError(
            f"queues {args.action}: name the queue, e.g. conveyor queues {args.action} emails"
        )
    paused = args.action == "pause"
    run_on_broker(app_for(args), lambda b: b.set_paused(args.name, paused))
    if args.json:
        print(json.dumps({"name": args.name, "paused": paused}))
    elif paused:
        print(f"queue {args.name} paused: no worker claims its jobs until it is resumed")
    else:
        print(f"queue {args.name} resumed")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel one job."""
    record = run_on_broker(app_for(args), lambda b: b.cancel(args.id, time.time()))
    if record is None:
        raise JobNotFound(f"no job with id {args.id!r}")
    if args.json:
        print(_to_json(record))
    elif record.status in FINISHED and record.status is not Status.CANCELLED:
        print(f"job {record.id} already {record.status.value}; nothing to cancel")
    elif record.cancel_requested:
        print(f"job {record.id} is running; its worker will cancel it at its next heartbeat")
    else:
        print(f"job {record.id} cancelled")
    return 0


def plural(n: int, noun: str) -> str:
    """``1 failed job``, ``2 failed jobs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def _not_failed(broker: Broker, ids: Sequence[str]) -> list[str]:
    """What is wrong with each of ``ids`` that is not a failed job, one phrase each."""
    wrong = []
    for job_id in dict.fromkeys(ids):
        record = await broker.get(job_id)
        if record is None:
            wrong.append(f"no job with id {job_id!r}")
        elif record.status is not Status.FAILED:
            wrong.append(f"job {job_id} is {record.status.value}, not failed")
    return wrong


def cmd_failed(args: argparse.Namespace) -> int:
    """The dead-letter queue: list, retry (redrive) or purge failed jobs."""
    app = app_for(args)
    ids = args.ids or None
    if args.action == "list":
        where = JobFilter(status=Status.FAILED, queue=args.queue, limit=args.limit)
        show_table(run_on_broker(existing(app), lambda b: b.list(where)), args.json)
        return 0
    if ids is None and not args.all and args.queue is None:
        raise UsageError(f"failed {args.action}: name job ids, or --queue Q, or --all")

    async def act(broker: Broker) -> tuple[int, list[str]]:
        # Looked at first, so that the message can say why an id was not moved; the move
        # itself stays one atomic step that skips whatever is not failed by then.
        wrong = await _not_failed(broker, ids) if ids else []
        if args.action == "retry":
            return await broker.retry_failed(ids, args.queue, time.time()), wrong
        return await broker.purge(Status.FAILED, args.queue, ids), wrong

    n, wrong = run_on_broker(app, act)
    done = "queued again" if args.action == "retry" else "deleted"
    if args.json:
        print(json.dumps({"count": n, "errors": wrong}))
    else:
        print(f"{plural(n, 'failed job')} {done}")
    if wrong:
        # As rm does with a missing file: the others are done, the exit code says not all.
        raise ConveyorError(f"failed {args.action}: " + "; ".join(wrong))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the PostgreSQL broker's schema, or print its SQL (``--sql``)."""
    app = app_for(args)
    scheme = app.url.partition(":")[0].lower()
    if scheme not in ("postgresql", "postgres"):
        if args.json:
            print(json.dumps({"broker": scheme, "migrated": False}))
        else:
            print(f"nothing to migrate: the {scheme}:// broker creates what it needs on first use")
        return 0
    from conveyor.brokers.postgres import PostgresBroker

    broker = app.broker
    assert isinstance(broker, PostgresBroker)
    if args.sql:
        sql = broker.migration_sql()
        print(
            json.dumps({"broker": scheme, "sql": sql}) if args.json else sql,
            end="\n" if args.json else "",
        )
        return 0

    async def migrate() -> tuple[int, int]:
        try:
            return await broker.migrate()
        finally:
            await broker.close()

    before, after = asyncio.run(migrate())
    if args.json:
        print(
            json.dumps(
                {
                    "broker": scheme,
                    "schema": broker.schema,
                    "migrated": before != after,
                    "from": before,
                    "to": after,
                }
            )
        )
    elif before == after:
        print(f"PostgreSQL schema {broker.schema} is up to date (version {after})")
    else:
        print(f"PostgreSQL schema {broker.schema} migrated from version {before} to {after}")
    return 0


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API, the Prometheus metrics and the dashboard on uvicorn."""
    token = args.token or os.environ.get("CONVEYOR_API_TOKEN") or None
    if token is None and not args.insecure and not is_loopback(args.host):
        raise UsageError(
            f"refusing to serve on {args.host} without a token: anyone who can reach it could "
            "enqueue, cancel and delete jobs. Pass --token (or set CONVEYOR_API_TOKEN), or "
            "--insecure if only trusted clients can reach that address"
        )
    if args.max_body < 1:
        raise UsageError(f"--max-body must be at least 1 byte, got {args.max_body}")
    try:
        from conveyor.web import WebSettings, create_app
        from conveyor.web.serve import serve
    except ImportError as exc:
        raise MissingDependency(
            f"conveyor serve needs an extra: pip install 'conveyor[web]' ({exc})"
        ) from exc
    app = existing(load_app(args.target))
    settings = WebSettings(token=token, allow_unknown=args.allow_unknown, max_body=args.max_body)
    # Without a token, answer only to this machine's names: a web page elsewhere cannot
    # reach the server through a DNS name that resolves to 127.0.0.1 (DNS rebinding).
    hosts = (
        None if token or args.insecure else ["localhost", "127.0.0.1", "::1", "[::1]", args.host]
    )
    web = create_app(app, settings, allowed_hosts=hosts)
    return serve(web, app, host=args.host, port=args.port, access_log=args.access_log)


# -- the parser ----------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("-A", "--app", help="the app as module:attribute (or $CONVEYOR_APP)")
    p.add_argument("-u", "--url", help="a broker URL instead of an app (or $CONVEYOR_URL)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serve", help="serve the HTTP API, metrics and dashboard")
    s.add_argument("target", nargs="?", help="the app as module:attribute (or $CONVEYOR_APP)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8181, help="port (default 8181)")
    s.add_argument("--token", help="API token required by every route (or $CONVEYOR_API_TOKEN)")
    s.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback address without a token"
    )
    s.add_argument(
        "--allow-unknown", action="store_true", help="accept jobs for tasks the app does not know"
    )
    s.add_argument(
        "--max-body", type=int, default=1024 * 1024, help="largest request body in bytes (1 MiB)"
    )
    s.add_argument("--access-log", action="store_true", help="log every request")


def _worker_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="run a worker")
    w.add_argument("target", nargs="?", help="the app as module:attribute (or $CONVEYOR_APP)")
    w.add_argument("-Q", "--queues", default="default", help="comma-separated queues")
    w.add_argument("-c", "--concurrency", type=int, default=10, help="jobs at once per process")
    w.add_argument("-p", "--processes", type=int, default=1, help="worker processes")
    w.add_argument("--burst", action="store_true", help="exit when no due job is left")
    w.add_argument("--lease", type=float, default=30.0, help="lease seconds (default 30)")
    w.add_argument("--grace", type=float, default=30.0, help="shutdown grace seconds")
    w.add_argument("--log-level", dest="worker_log_level", help=argparse.SUPPRESS)
    w.add_argument("--log-file", dest="worker_log_file", help="append logs to this file")


def _enqueue_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("enqueue", help="enqueue a job by task name")
    e.add_argument("name", help="the task's registered name, e.g. tasks.send_email")
    e.add_argument("--args", default="[]", help="positional arguments as a JSON list")
    e.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    e.add_argument("--queue")
    e.add_argument("--priority", type=int)
    e.add_argument("--delay", type=float, help="seconds before it is due")
    e.add_argument(
        "--eta", help="when it is due: ISO-8601 (local time unless it has an offset) or epoch"
    )
    e.add_argument("--key", help="uniqueness key")
    e.add_argument("--retries", type=int, help="retries after the first attempt")
    e.add_argument("--timeout", type=float, help="seconds one attempt may run")
    e.add_argument(
        "--allow-unknown", action="store_true", help="enqueue a task the app does not register"
    )
    _common(e)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--log-file", help="append logs to this file instead of stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _worker_parser(sub)
    _serve_parser(sub)
    _enqueue_parser(sub)

    j = sub.add_parser("job", help="show one job")
    j.add_argument("id")
    _common(j)

    js = sub.add_parser("jobs", help="list jobs, newest first")
    js.add_argument("--status", choices=[s.value for s in Status])
    js.add_argument("--queue")
    js.add_argument("--task")
    js.add_argument("--limit", type=int, default=50)
    _common(js)

    q = sub.add_parser("queues", help="jobs per queue and status; pause or resume a queue")
    q.add_argument("action", nargs="?", choices=["pause", "resume"], help="pause or resume NAME")
    q.add_argument("name", nargs="?", help="the queue to pause or resume")
    _common(q)

    c = sub.add_parser("cancel", help="cancel a job")
    c.add_argument("id")
    _common(c)

    f = sub.add_parser("failed", help="the dead-letter queue: list, retry or purge failed jobs")
    f.add_argument("action", choices=["list", "retry", "purge"])
    f.add_argument("ids", nargs="*", help="job ids (retry/purge)")
    f.add_argument("--queue")
    f.add_argument("--all", action="store_true", help="every failed job (retry/purge)")
    f.add_argument("--limit", type=int, default=50)
    _common(f)

    m = sub.add_parser("migrate", help="create or upgrade the PostgreSQL schema (or print it)")
    m.add_argument("--sql", action="store_true", help="print the SQL instead of applying it")
    _common(m)
    return parser


def _setup_logging(level: str, path: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError:
        raise UsageError(
            f"unknown --log-level {level!r}; use DEBUG, INFO, WARNING or ERROR"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``conveyor`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "enqueue": cmd_enqueue,
        "job": cmd_job,
        "jobs": cmd_jobs,
        "queues": cmd_queues,
        "cancel": cmd_cancel,
        "failed": cmd_failed,
        "migrate": cmd_migrate,
        "serve": cmd_serve,
    }
    try:
        if args.command == "worker":
            _setup_logging(
                args.worker_log_level or args.log_level, args.worker_log_file or args.log_file
            )
            return cmd_worker(args, argv)
        _setup_logging(args.log_level, args.log_file)
        return commands[args.command](args)
    except UsageError as exc:
        print(f"conveyor: error: {exc}", file=sys.stderr)
        return 2
    except (ConveyorError, ConfigurationError, TypeError, ValueError) as exc:
        print(f"conveyor: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"conveyor: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
