"""``labelstudio-ingest``: the command-line front of the service, one sub-command per job.

``labelstudio-ingest consume`` runs the consumer. Each setting is an environment variable and a
flag (the variable without ``INGEST_``, lower case, dashes); flags win. Later sub-commands
(``dlq``, ``export``, ``webhooks``, ``backfill``) register themselves in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any, get_args

from kafka.errors import KafkaError
from pydantic import SecretStr, ValidationError

from labelstudio_ingest.consumer import backfill_cli, dlq_cli, export_cli, logs, webhooks_cli
from labelstudio_ingest.consumer.connection import ClientErrors, connection_failure
from labelstudio_ingest.consumer.settings import Settings, describe_errors, env_name, flag_name

PROG = "labelstudio-ingest"
EXIT_USAGE = 2


def add_settings_flags(parser: argparse.ArgumentParser, fields: Iterable[str] | None = None) -> None:
    """One flag per :class:`Settings` field (or per one of ``fields``); absent flags leave env in charge."""
    for field in fields if fields is not None else Settings.model_fields:
        info = Settings.model_fields[field]
        env = env_name(field)
        help_text = f"{info.description or ''} [env {env}]"
        if info.annotation is bool:
            parser.add_argument(
                flag_name(field),
                dest=field,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            secret = SecretStr in get_args(info.annotation) or info.annotation is SecretStr
            parser.add_argument(
                flag_name(field),
                dest=field,
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=help_text + (" (prefer the environment: flags show in process lists)" if secret else ""),
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Turn LLM runs from Kafka into Label Studio tasks, exactly once per run."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    consume = commands.add_parser(
        "consume",
        help="run the consumer: Kafka → validate → dedup → Label Studio",
        description="Run the consumer service. Settings come from the environment; flags override them.",
    )
    add_settings_flags(consume)
    consume.set_defaults(handler=_consume)
    dlq_cli.register(commands, add_settings_flags)
    export_cli.register(commands, add_settings_flags)
    webhooks_cli.register(commands, add_settings_flags)
    backfill_cli.register(commands, add_settings_flags)
    return parser


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment with ``overrides`` (flag values by field name) on top."""
    return Settings(**overrides)


def _consume(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        settings = load_settings(overrides)
    except ValidationError as exc:
        print(f"{PROG}: {describe_errors(exc)}", file=sys.stderr)
        return EXIT_USAGE

    from labelstudio_ingest.consumer.app import ConsumerApp  # noqa: PLC0415 - heavy imports after the checks

    logs.configure(settings.log_level, secrets=settings.secrets())
    mask = logs.Masker(settings.secrets())
    app = ConsumerApp(settings)
    app.install_signal_handlers()
    client = ClientErrors()
    try:
        with client:
            app.build()
    except KafkaError as exc:  # refused or unreachable: say which settings, without a traceback
        message = mask(connection_failure(settings, exc, client.last))
        logging.getLogger(__name__).error("start-up failed: %s", message)
        print(f"{PROG}: start-up failed: {message}", file=sys.stderr)
        app.close(commit_ok=False)
        return 1
    except Exception as exc:
        logging.getLogger(__name__).exception("start-up failed")
        print(f"{PROG}: start-up failed: {mask(str(exc))}", file=sys.stderr)
        app.close(commit_ok=False)
        return 1
    return app.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labelstudio-ingest`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
