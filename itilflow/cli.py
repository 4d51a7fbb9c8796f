"""The `itilflow` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from itilflow.commands.client import add_client_commands
from itilflow.commands.db import add_db_commands
from itilflow.commands.directory import add_directory_commands
from itilflow.commands.doctor import add_doctor_commands
from itilflow.commands.inbox import add_inbox_commands
from itilflow.commands.oncall import add_oncall_commands
from itilflow.commands.principals import add_principal_commands
from itilflow.commands.services import add_service_commands
from itilflow.commands.session import add_session_commands
from itilflow.settings import PREFECT_AUTH_FILE, Settings, SettingsError

if TYPE_CHECKING:
    from itilflow.policies import Policies


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "demo", False):
        overrides["demo"] = True
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    try:
        return Settings(**overrides)
    except ValidationError as exc:  # e.g. ITILFLOW_GATEWAY_PORT=abc: say so, no traceback
        raise SettingsError(str(exc)) from None


def _policies(settings: Settings) -> Policies:
    """The policies, or a SettingsError naming each problem's file, key and expectation: an
    invalid policy is an expected startup error, printed alone (no traceback)."""
    from itilflow.policies import PolicyError, load_policies

    try:
        return load_policies(settings.policy_dir, stack_urls=settings.stack_urls())
    except PolicyError as exc:
        where = settings.policy_dir or "the packaged defaults"
        raise SettingsError(f"invalid policies in {where}:\n{exc}") from None


def _check_step_user(policies: Policies) -> None:
    """Refuse to start a worker that could not run steps as change.yaml's `steps.run_as`."""
    from itilflow.executors import Containment, ContainmentRefused

    steps = policies.change.steps
    try:
        Containment(run_as=steps.run_as, run_as_group=steps.run_as_group).account()
    except ContainmentRefused as exc:
        raise SettingsError(f"{exc} (change.yaml steps.run_as)") from None


def cmd_up(args: argparse.Namespace) -> int:
    from itilflow.commands.db import upgrade_before_up
    from itilflow.stack import Stack, StackError, keep_data_private

    settings = _settings(args)
    keep_data_private(settings.data_dir)  # before anything writes there
    settings.require_secrets()
    policies = _policies(settings)  # refuse to start on an invalid policy
    if settings.workers:
        _check_step_user(policies)
    upgrade_before_up(settings.database_url or "")  # before anything starts that uses it
    stack = Stack(settings, mail_intake=policies.mail.enabled)
    inbox = None
    if settings.demo and stack.demo_inbox:
        from itilflow.demo.inbox import chat_tags

        inbox = stack.use_demo_inbox(chat_tags(policies))

    # Set both explicitly: a process started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, stack.interrupt)
    signal.signal(signal.SIGINT, stack.interrupt)
    stack.say = lambda text: print(text, end="", flush=True)
    try:
        stack.up()
        if settings.demo:
            from itilflow.demo import load_demo

            print(load_demo(settings))
        assert settings.api_token is not None
        token = settings.api_token.get_secret_value() if settings.demo else "$ITILFLOW_API_TOKEN"
        print(
            f"\n  Prefect UI:   {stack.api_url.removesuffix('/api')}"
            + (
                ""
                if settings.prefect_api_url
                else f"  (its login, user:password: {stack.data_dir / PREFECT_AUTH_FILE})"
            )
            + "\n"
            f"  Gateway:      {settings.public_url}  (API docs: {settings.public_url}/docs)\n"
            f"  API token:    {token}\n"
            f"  Data:         {stack.data_dir}  (logs in {stack.data_dir / 'logs'})\n"
            + (f"  Notifications: {inbox}  (mail/*.eml, chat.jsonl)\n" if inbox else "")
            + "".join(f"  {note}\n" for note in stack.notes)
            + "\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stack.watch(lambda line: print(f"itilflow up: {line}", file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except StackError as exc:
        print(f"itilflow up: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Prefect worker of the work pool with the stack's environment, in the foreground: how a
    worker-only host joins (docs/scaling.md). Its exit code is the worker's."""
    import os

    from itilflow.stack import WORKER_ENV, Stack

    settings = _settings(args)
    settings.require_secrets()
    _check_step_user(_policies(settings))
    if not settings.prefect_api_url:
        raise SettingsError(
            "ITILFLOW_PREFECT_API_URL not set: a worker host needs the shared Prefect server"
        )
    stack = Stack(settings)
    command = stack.worker_command(args.number, limit=args.limit)
    os.execve(command[0], command, {**stack.env(), **WORKER_ENV})
    return 0  # not reached: the worker replaced this process


def cmd_runner(args: argparse.Namespace) -> int:
    from itilflow import runtime
    from itilflow.dispatch.runner import Runner, require_api_url
    from itilflow.flows.lost_changes import watch_lost_changes

    require_api_url()
    rt = runtime.configure(_settings(args))
    _policies(rt.settings)  # refuse to start on an invalid policy
    runner = Runner(
        rt.engine, concurrency=rt.settings.runner_concurrency, name=rt.settings.runner_name
    )
    from itilflow.metrics import serve_runner_metrics

    serve_runner_metrics(rt.settings.runner_metrics_host, rt.settings.runner_metrics_port or 0)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # Beside the runner: changes whose run died mid-implementation (a crash, a power cut)
        # are found within seconds of this start.
        await asyncio.gather(runner.run(stop), watch_lost_changes(stop))

    asyncio.run(main())
    return 0


def cmd_mail_intake(args: argparse.Namespace) -> int:
    """The email channel's watcher (dispatch/mail_watch.py), until SIGINT or SIGTERM."""
    import threading

    from itilflow import runtime
    from itilflow.dispatch.mail_watch import watch_mailbox
    from itilflow.dispatch.runner import require_api_url
    from itilflow.policies.mail import MailPasswordMissing, mailbox_password

    require_api_url()
    rt = runtime.configure(_settings(args))
    policy = _policies(rt.settings).mail
    if not policy.enabled:
        print("mail intake: mail.yaml says enabled: false; nothing to do", file=sys.stderr)
        return 0
    try:
        mailbox_password(policy)  # refuse to start without it, saying where it was looked for
    except MailPasswordMissing as exc:
        raise SettingsError(str(exc)) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    watch_mailbox(policy, stop)
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from itilflow.gateway.app import create_app
    from itilflow.gateway.server import server_config

    settings = _settings(args)
    app = create_app(settings, policies=_policies(settings))
    uvicorn.Server(server_config(app, settings)).run()
    return 0


def cmd_demo_inbox(args: argparse.Namespace) -> int:
    from itilflow.demo.inbox import serve_inbox

    settings = _settings(args)
    serve_inbox(settings.data_dir / "demo-inbox", settings.demo_smtp_port, settings.demo_chat_port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from itilflow.demo import load_demo

    print(load_demo(_settings(args)))
    return 0


def cmd_check_policies(args: argparse.Namespace) -> int:
    from itilflow.policies import PolicyError, load_policies

    try:
        load_policies(args.directory)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"policies in {args.directory or 'the packaged defaults'} are valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="itilflow", description=__doc__)
    parser.add_argument("--data-dir", help="where the database, logs and Prefect's data live")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole stack on this machine")
    up.add_argument(
        "--demo",
        action="store_true",
        help="demo mode: own secrets, sample engineers, CIs and incidents",
    )
    up.add_argument(
        "--workers",
        type=int,
        help="Prefect workers to start on this host (default ITILFLOW_WORKERS, 1; 0: none)",
    )
    up.set_defaults(run=cmd_up)
    worker = sub.add_parser(
        "worker", help="run one Prefect worker of the work pool (a worker-only host)"
    )
    worker.add_argument(
        "--number", type=int, default=1, help="this worker's number on this host (its name)"
    )
    worker.add_argument("--limit", type=int, help="most runs at once (default: no limit)")
    worker.set_defaults(run=cmd_worker)
    sub.add_parser("runner", help="run the flows for due triggers (started by up)").set_defaults(
        run=cmd_runner
    )
    sub.add_parser(
        "mail-intake", help="read the service mailbox into incidents (started by up, mail.yaml)"
    ).set_defaults(run=cmd_mail_intake)
    sub.add_parser("gateway", help="serve the HTTP API (started by up)").set_defaults(
        run=cmd_gateway
    )
    sub.add_parser("demo-inbox", help="keep demo mail and chat in the data folder").set_defaults(
        run=cmd_demo_inbox
    )
    demo = sub.add_parser("demo", help="load sample engineers and CIs, open sample incidents")
    demo.set_defaults(run=cmd_demo, demo=True)
    add_client_commands(sub)
    add_inbox_commands(sub)
    check = sub.add_parser("check-policies", help="validate a policy folder")
    check.add_argument("directory", nargs="?", type=Path)
    check.set_defaults(run=cmd_check_policies)
    add_db_commands(sub)
    add_directory_commands(sub)
    add_doctor_commands(sub)
    add_oncall_commands(sub)
    add_principal_commands(sub)
    add_session_commands(sub)
    add_service_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _configure_logging()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SettingsError as exc:
        print(f"itilflow: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not _is_schema_version_error(exc):
            raise
        print(f"itilflow: {exc}", file=sys.stderr)
        return 1


def _configure_logging() -> None:
    """Text or JSON lines with a level (ITILFLOW_LOG_FORMAT, ITILFLOW_LOG_LEVEL); a bad value
    is said once and the defaults are kept, so that the command still runs and says more."""
    from itilflow.logs import configure_logging
    from itilflow.settings import LogSettings

    try:
        wanted = LogSettings()
    except ValidationError as exc:
        configure_logging()
        logging.getLogger("itilflow").warning("log settings ignored: %s", exc)
        return
    configure_logging(wanted.log_format, wanted.log_level)


def _is_schema_version_error(exc: Exception) -> bool:
    # Not imported up front: it loads every model, which most commands do not need. A command
    # that raised one has imported it.
    migrations = sys.modules.get("itilflow.models.migrations")
    return migrations is not None and isinstance(exc, migrations.SchemaVersionError)


if __name__ == "__main__":
    sys.exit(main())
