"""The ``vision-pipeline`` command: serve, worker, db push, token, jobs, users (SEED_API §7)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Sequence
from types import FrameType

import anyio

from rpc.config import Settings


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from rpc.app import create_app

    if settings.local_mode and not _is_loopback(args.host):
        print(
            f"refusing to listen on {args.host} in local mode (no JWT_SECRET): every request "
            "would act as the local user. Set JWT_SECRET, or use --host 127.0.0.1.",
            file=sys.stderr,
        )
        return 2

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # Open live-progress streams would hold the graceful shutdown for its whole
            # timeout: end them now (without `return`, so their clients resume elsewhere).
            services = getattr(app.state, "services", None)
            if services is not None:
                services.live.close_threadsafe()
            # uvicorn re-raises a captured SIGTERM after shutting down, so the process would
            # die "by signal"; a drained, signalled stop is a clean one: exit 0.
            self._captured_signals.clear()

    app = create_app(settings, run_worker=not args.no_worker)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=max(int(settings.shutdown_grace_seconds) + 5, 5),
    )
    Server(config).run()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.runner import run, run_worker
    from pipeline.service import build_worker
    from storage.engine import open_store

    async def main() -> None:
        store = await open_store(settings.database_url, pool_size=settings.pool_size())
        await run_worker(store, build_worker(store, settings))

    run(main)
    return 0


def cmd_db_push(args: argparse.Namespace, settings: Settings) -> int:
    from storage.schema import push
    from storage.urls import parse_database_url

    added = anyio.run(push, parse_database_url(settings.database_url))
    print("tables are up to date" + (f" (added columns: {', '.join(added)})" if added else ""))
    return 0


def cmd_db_convert_images(args: argparse.Namespace, settings: Settings) -> int:
    """Move the whole data: URLs older versions kept in visionJobs.imageUrl into the image
    store (serve and worker do it at start; this does it now, and says what it did)."""
    from storage.engine import open_driver
    from storage.images import INVALID_IMAGE_URL, convert_inline_images
    from storage.schema import push
    from storage.store import JobStore
    from storage.urls import parse_database_url

    async def main() -> None:
        url = parse_database_url(settings.database_url)
        await push(url)
        store = JobStore(await open_driver(url))
        try:
            done = await convert_inline_images(store)
        finally:
            await store.driver.close()
        print(f"converted {done.jobs} jobs with a data: URL into {done.images} stored images"
              + (f" ({done.invalid} not valid base64: now {INVALID_IMAGE_URL})"
                 if done.invalid else ""))  # fmt: skip

    anyio.run(main)
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from rpc.auth.tokens import mint_token, open_id_problem, secret_warning, storable

    if not settings.jwt_secret:
        print("JWT_SECRET is not set: tokens are only needed when it is.", file=sys.stderr)
        return 2
    problem = open_id_problem(args.open_id)
    if problem is None and args.name is not None and not storable(args.name):
        problem = "its --name holds a NUL character or a lone surrogate"
    if problem is not None:
        print(f"the server would refuse a token for this --open-id: {problem}", file=sys.stderr)
        return 2
    if weak := secret_warning(settings.jwt_secret):
        logging.getLogger("rpc.cli").warning(weak)
    print(mint_token(settings.jwt_secret, args.open_id, name=args.name, app_id=settings.app_id,
                     expires_in=args.days * 86400))  # fmt: skip
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from storage.engine import open_store

    async def main() -> int:
        store = await open_store(settings.database_url)
        try:
            if args.action == "retry":
                if await store.retry_failed_job(args.job_id):
                    print(f"job {args.job_id} is pending again, retries reset")
                    return 0
                print(f"job {args.job_id} is not in error", file=sys.stderr)
                return 1
            outcome = await store.cancel_job(args.job_id)
            if outcome is None:
                print(f"job {args.job_id} is not waiting or running", file=sys.stderr)
                return 1
            print(f"job {args.job_id}: {outcome}")
            return 0
        finally:
            await store.driver.close()

    return anyio.run(main)


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    from storage.engine import open_store

    async def main() -> int:
        store = await open_store(settings.database_url)
        try:
            user_id = await store.set_user_role(args.open_id, args.role)
            print(f"user {args.open_id} (id {user_id}) is now {args.role}")
            return 0
        finally:
            await store.driver.close()

    return anyio.run(main)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vision-pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the API, with the worker in the same process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--no-worker", action="store_true", help="API only")
    serve.set_defaults(run=cmd_serve)

    worker = sub.add_parser("worker", help="the worker only (run as many as you like)")
    worker.set_defaults(run=cmd_worker)

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("push", help="create or update the tables").set_defaults(run=cmd_db_push)
    db_sub.add_parser(
        "convert-images", help="move data: URLs stored by older versions into the image store"
    ).set_defaults(run=cmd_db_convert_images)

    token = sub.add_parser("token", help="print a session token for an API user")
    token.add_argument("--open-id", required=True)
    token.add_argument("--name")
    token.add_argument("--days", type=int, default=365)
    token.set_defaults(run=cmd_token)

    jobs = sub.add_parser("jobs", help="operate on jobs")
    jobs.add_argument("action", choices=["retry", "cancel"])
    jobs.add_argument("job_id", type=int)
    jobs.set_defaults(run=cmd_jobs)

    users = sub.add_parser("users", help="operate on users")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    set_role = users_sub.add_parser("set-role", help="make a user an admin (or a user)")
    set_role.add_argument("open_id")
    set_role.add_argument("role", choices=["admin", "user"])
    set_role.set_defaults(run=cmd_users)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    _setup_logging(settings)
    return int(args.run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
