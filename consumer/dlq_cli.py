"""``labelstudio-ingest dlq inspect|replay``: list dead letters readably, re-publish them after a fix.

Both read the dead-letter topic from its beginning to the end it had when they started (see
``dlq_kafka._read``) with manually assigned partitions (no consumer group, nothing committed) and
take the same filters. Kafka connection
settings are the consumer's (same variables, same flags); Label Studio settings are not needed.
Exit codes: 0 done, 1 Kafka unreachable or refusing, 2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from labelstudio_ingest.consumer.connection import ClientErrors, what_to_check
from labelstudio_ingest.consumer.dlq import (
    DeadLetter,
    Filter,
    as_json,
    line,
    parse_time,
    replay_headers,
    summary,
)
from labelstudio_ingest.consumer.logs import Masker
from labelstudio_ingest.consumer.settings import describe_errors

if TYPE_CHECKING:
    from labelstudio_ingest.consumer.dlq_kafka import KafkaConnection

PROG = "labelstudio-ingest dlq"
EXIT_OK, EXIT_KAFKA, EXIT_USAGE = 0, 1, 2
CONNECTION_FIELDS = (
    "bootstrap_servers",
    "security_protocol",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "topic",
    "dlq_topic",
)
"""The :class:`Settings` fields the commands take (``dlq_kafka.KafkaConnection``)."""

AddFlags = Callable[[argparse.ArgumentParser, Iterable[str]], None]


class UsageError(ValueError):
    """A bad argument, reported in one line with exit code 2."""


def register(commands: Any, add_flags: AddFlags) -> None:
    """Add ``dlq inspect`` and ``dlq replay`` to the top-level sub-command ``commands``."""
    group = commands.add_parser(
        "dlq",
        help="inspect or replay dead letters",
        description="Inspect dead letters, or replay them to the input topic after fixing their cause.",
    )
    actions = group.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    inspect = actions.add_parser(
        "inspect",
        help="list dead letters, one line each, with a count per reason",
        description="List dead letters (oldest first) and count them per reason. Commits nothing.",
    )
    replay = actions.add_parser(
        "replay",
        help="re-publish dead letters to the input topic",
        description=(
            "Re-publish matching dead letters (original key, value and headers, plus ingest.replay.of) "
            "to the input topic. Safe to repeat: the consumer skips runs it already imported."
        ),
    )
    for parser in (inspect, replay):
        _add_filters(parser)
        add_flags(parser, CONNECTION_FIELDS)
    inspect.add_argument(
        "--json", action="store_true", help="one JSON object per dead letter (all headers, value)"
    )
    inspect.set_defaults(handler=_inspect)
    replay.add_argument("--to", metavar="TOPIC", help="topic to replay to (default: INGEST_TOPIC)")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed, send nothing")
    replay.set_defaults(handler=_replay)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", action="append", default=[], metavar="R", help="only this reason (repeatable)"
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="dead-lettered at or after TIME: ISO 8601 (UTC if no zone) or 30m, 2h, 7d ago",
    )
    parser.add_argument("--until", metavar="TIME", help="dead-lettered before TIME (same forms as --since)")
    parser.add_argument("--limit", metavar="N", help="at most N dead letters (the oldest matching)")
    parser.add_argument(
        "--timeout", metavar="SECONDS", default="15", help="longest wait for Kafka at each step (default 15)"
    )


def _positive(name: str, text: str | None, kind: Callable[[str], float]) -> float | None:
    if text is None:
        return None
    try:
        number = kind(text)
    except ValueError:
        number = -1
    if number <= 0:
        raise UsageError(f"{name} must be a positive number, not {text!r}")
    return number


def _filter(args: argparse.Namespace) -> Filter:
    now = datetime.now(UTC)
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        text = getattr(args, name)
        try:
            times[name] = parse_time(text, now) if text is not None else None
        except ValueError as exc:
            raise UsageError(f"--{name}: {exc}") from None
    since, until = times["since"], times["until"]
    if since is not None and until is not None and since >= until:
        raise UsageError("--since must be before --until")
    return Filter(frozenset(r.strip() for r in args.reason if r.strip()), since, until)


def _matching(conn: KafkaConnection, args: argparse.Namespace, timeout_s: float) -> list[DeadLetter]:
    """The matching dead letters, oldest first, at most ``--limit``."""
    from labelstudio_ingest.consumer.dlq_kafka import read_topic  # noqa: PLC0415 - kafka only when needed

    chosen = _filter(args)
    limit = _positive("--limit", args.limit, int)
    letters = [letter for letter in read_topic(conn, conn.dlq, timeout_s) if chosen.matches(letter)]
    oldest = datetime.min.replace(tzinfo=UTC)
    letters.sort(key=lambda letter: (letter.time or oldest, letter.partition, letter.offset))
    return letters[: int(limit)] if limit is not None else letters


def _run(args: argparse.Namespace, body: Callable[[KafkaConnection, float], int]) -> int:
    """Settings and arguments checked (exit 2), Kafka trouble reported (exit 1), else ``body``."""
    from labelstudio_ingest.consumer.dlq_kafka import KafkaConnection, KafkaUnavailable  # noqa: PLC0415

    overrides = {k: v for k, v in vars(args).items() if k in CONNECTION_FIELDS}
    try:
        conn = KafkaConnection(**overrides)
        timeout_s = _positive("--timeout", args.timeout, float)
        assert timeout_s is not None
        _filter(args)
        _positive("--limit", args.limit, int)
    except ValidationError as exc:
        print(f"{PROG}: {describe_errors(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"{PROG} {args.dlq_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = ClientErrors()
    try:
        with client:
            return body(conn, timeout_s)
    except KafkaUnavailable as exc:
        message = str(exc)
        if client.last:
            message += f" (last client error: {client.last})"
        message += f". Check {what_to_check(conn)}."
        print(f"{PROG} {args.dlq_command}: {Masker(conn.secrets())(message)}", file=sys.stderr)
        return EXIT_KAFKA


def _inspect(args: argparse.Namespace) -> int:
    def body(conn: KafkaConnection, timeout_s: float) -> int:
        letters = _matching(conn, args, timeout_s)
        write_letters(letters, sys.stdout, as_json_lines=args.json)
        print(
            summary(Counter(x.reason for x in letters), f"in {conn.dlq}"),
            file=sys.stderr if args.json else sys.stdout,
        )
        return EXIT_OK

    return _run(args, body)


def write_letters(letters: Iterable[DeadLetter], out: TextIO, *, as_json_lines: bool) -> None:
    """Dead letters as readable lines or as JSON lines."""
    for letter in letters:
        out.write((json.dumps(as_json(letter), ensure_ascii=False) if as_json_lines else line(letter)) + "\n")


def split_replayable(letters: Iterable[DeadLetter]) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(replayable, skipped): dead letters sent without their value cannot be replayed."""
    replayable: list[DeadLetter] = []
    skipped: list[DeadLetter] = []
    for letter in letters:
        (skipped if letter.value_omitted else replayable).append(letter)
    return replayable, skipped


def replay_records(
    letters: Iterable[DeadLetter],
) -> Iterator[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """(key, value, headers) to publish for each dead letter."""
    for letter in letters:
        yield letter.key, letter.value, replay_headers(letter)


def _replay(args: argparse.Namespace) -> int:
    def body(conn: KafkaConnection, timeout_s: float) -> int:
        from labelstudio_ingest.consumer.dlq_kafka import Replayer  # noqa: PLC0415

        target = args.to or conn.topic
        if target == conn.dlq:
            print(f"{PROG} replay: --to must not be the dead-letter topic {conn.dlq}", file=sys.stderr)
            return EXIT_USAGE
        replayable, skipped = split_replayable(_matching(conn, args, timeout_s))
        for letter in skipped:
            print(f"skipped (value omitted, cannot be replayed): {line(letter)}")
        if args.dry_run:
            write_letters(replayable, sys.stdout, as_json_lines=False)
            verb = f"would be replayed to {target} (dry run)"
        else:
            replayer = Replayer(conn, timeout_s)
            try:
                replayer.send_all(target, list(replay_records(replayable)))
            finally:
                replayer.close()
            verb = f"replayed to {target}"
        print(summary(Counter(x.reason for x in replayable), verb))
        if skipped:
            print(summary(Counter(x.reason for x in skipped), "skipped (value omitted)"))
        return EXIT_OK

    return _run(args, body)


__all__ = ["CONNECTION_FIELDS", "register", "replay_records", "split_replayable", "write_letters"]
