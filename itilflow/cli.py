"""The `itilflow` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from itilflow.settings import Settings, SettingsError


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "demo", False):
        overrides["demo"] = True
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    return Settings(**overrides)


def cmd_up(args: argparse.Namespace) -> int:
    from itilflow.policies import load_policies
    from itilflow.stack import Stack, StackError

    settings = _settings(args)
    settings.require_secrets()
    policies = load_policies(settings.policy_dir)  # refuse to start on an invalid policy
    stack = Stack(settings)
    inbox = None
    if settings.demo and stack.demo_inbox:
        from itilflow.demo.inbox import chat_tags

        inbox = stack.use_demo_inbox(chat_tags(policies))

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt

    # Set both explicitly: a process started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    try:
        print(
            f"starting the Prefect server, deployments, {settings.workers} worker(s), runner "
            "and gateway ..."
        )
        stack.up()
        if settings.demo:
            from itilflow.demo import load_demo

            print(load_demo(settings))
        assert settings.api_token is not None
        token = settings.api_token.get_secret_value() if settings.demo else "$ITILFLOW_API_TOKEN"
        print(
            f"\n  Prefect UI:   {stack.api_url.removesuffix('/api')}\n"
            f"  Gateway:      {settings.public_url}  (API docs: {settings.public_url}/docs)\n"
            f"  API token:    {token}\n"
            f"  Data:         {stack.data_dir}  (logs in {stack.data_dir / 'logs'})\n"
            + (f"  Notifications: {inbox}  (mail/*.eml, chat.jsonl)\n" if inbox else "")
            + "\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stack.watch()
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

    require_api_url()
    rt = runtime.configure(_settings(args))
    rt.policies  # noqa: B018 (refuse to start on an invalid policy)
    runner = Runner(
        rt.engine, concurrency=rt.settings.runner_concurrency, name=rt.settings.runner_name
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await runner.run(stop)

    asyncio.run(main())
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from itilflow.gateway.app import create_app

    settings = _settings(args)
    app = create_app(settings)
    uvicorn.run(app, host=settings.gateway_host, port=settings.gateway_port, log_level="warning")
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


def _api(settings: Settings) -> object:
    import httpx

    settings.require_secrets()
    assert settings.api_token is not None
    return httpx.Client(
        base_url=settings.public_url or "",
        timeout=30,
        headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
    )


def cmd_change_submit(args: argparse.Namespace) -> int:
    import yaml

    body = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
    for key in ("planned_start", "planned_end"):
        if body.get(key) is not None:
            body[key] = str(body[key])
    response = _api(_settings(args)).post("/api/changes", json=body)  # type: ignore[attr-defined]
    if response.status_code != 201:
        print(f"refused ({response.status_code}): {response.json().get('detail')}", file=sys.stderr)
        return 1
    change = response.json()
    print(f"{change['number']} submitted: {change['url']}")
    return 0


def cmd_change_show(args: argparse.Namespace) -> int:
    api = _api(_settings(args))
    change = api.get(f"/api/changes/{args.change}")  # type: ignore[attr-defined]
    if change.status_code != 200:
        print(change.json().get("detail"), file=sys.stderr)
        return 1
    data = change.json()
    print(f"{data['number']} v{data['version']} {data['status']}: {data['title']}")
    for entry in api.get(f"/api/changes/{args.change}/timeline").json():  # type: ignore[attr-defined]
        print(f"  {entry['at'][:19]}  {entry['kind']:<22} {entry['message']}")
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
    sub.add_parser("gateway", help="serve the HTTP API (started by up)").set_defaults(
        run=cmd_gateway
    )
    sub.add_parser("demo-inbox", help="keep demo mail and chat in the data folder").set_defaults(
        run=cmd_demo_inbox
    )
    demo = sub.add_parser("demo", help="load sample engineers and CIs, open sample incidents")
    demo.set_defaults(run=cmd_demo, demo=True)
    change = sub.add_parser("change", help="submit a change request or show one")
    change_sub = change.add_subparsers(dest="change_command", required=True)
    submit = change_sub.add_parser("submit", help="submit a change from a YAML file")
    submit.add_argument("file", help="e.g. docs/examples/change.yaml")
    submit.set_defaults(run=cmd_change_submit)
    show = change_sub.add_parser("show", help="a change's status and timeline")
    show.add_argument("change", help="e.g. CHG-000001")
    show.set_defaults(run=cmd_change_show)
    check = sub.add_parser("check-policies", help="validate a policy folder")
    check.add_argument("directory", nargs="?", type=Path)
    check.set_defaults(run=cmd_check_policies)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SettingsError as exc:
        print(f"itilflow: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
