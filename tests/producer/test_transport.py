"""The transport's own rules, with a stand-in producer whose deliveries the test settles by hand."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, TopicAuthorizationFailedError
from kafka.future import Future

from labelstudio_ingest.consumer.embedded import free_port, wait_until
from labelstudio_ingest.producer import client, transport
from labelstudio_ingest.producer.transport import Record, Transport


class HandSettledProducer:
    """Takes records like ``KafkaProducer.send`` and leaves their futures open for the test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: list[Future] = []
        self.sent = 0

    def send(self, topic: str, *, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Future:
        future = Future()
        with self.lock:
            self.open.append(future)
            self.sent += 1
        return future

    def settle(self, outcome: BaseException | None = None) -> int:
        """Complete every open future (success, or ``outcome`` as the error); return how many."""
        with self.lock:
            futures, self.open = self.open, []
        for future in futures:
            if outcome is None:
                future.success(None)
            else:
                future.failure(outcome)
        return len(futures)


def _record(i: int) -> Record:
    return Record(topic="t", key=f"k{i}".encode(), value=b"{}", headers=[])


@pytest.fixture
def fake() -> Iterator[tuple[Transport, HandSettledProducer]]:
    producer = HandSettledProducer()
    sender = Transport(producer=producer)  # type: ignore[arg-type]
    yield sender, producer
    producer.settle()
    sender.close(0)


def test_only_a_window_of_records_is_handed_to_the_client(
    fake: tuple[Transport, HandSettledProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    sender, producer = fake
    monkeypatch.setattr(transport, "_MAX_IN_FLIGHT", 10)
    for i in range(25):
        assert sender.submit(_record(i))
    wait_until(lambda: producer.sent == 10, message="the window was not filled")
    assert sender.stats().buffered == 25

    while sender.stats().published < 25:
        producer.settle()
    assert producer.sent == 25
    assert sender.flush(10)


def test_retriable_failures_are_retried_and_permanent_ones_counted(
    fake: tuple[Transport, HandSettledProducer],
) -> None:
    sender, producer = fake
    sender.submit(_record(1))
    wait_until(lambda: producer.sent == 1, message="not sent")
    producer.settle(KafkaTimeoutError("expired in the client"))
    wait_until(lambda: producer.sent == 2, message="not retried")
    producer.settle()
    wait_until(lambda: sender.stats().published == 1, message="not published")

    sender.submit(_record(2))
    wait_until(lambda: producer.sent == 3, message="not sent")
    producer.settle(TopicAuthorizationFailedError())
    wait_until(lambda: sender.stats().failed == 1, message="not counted as failed")
    assert sender.stats().buffered == 0
    assert producer.sent == 3  # never retried


@pytest.mark.parametrize("refusal", [MessageSizeTooLargeError(), TopicAuthorizationFailedError()])
def test_a_broker_refusing_a_record_for_good_is_counted_not_retried(
    fake: tuple[Transport, HandSettledProducer], refusal: Exception
) -> None:
    """E.g. a topic whose max.message.bytes is below the producer's max_request_size."""
    sender, producer = fake
    sender.submit(_record(1))
    wait_until(lambda: producer.sent == 1, message="not sent")
    producer.settle(refusal)
    wait_until(lambda: sender.stats().failed == 1, message="not counted as failed")
    sender.submit(_record(2))
    wait_until(lambda: producer.sent == 2, message="the next record is not sent")
    producer.settle()
    wait_until(lambda: sender.stats().published == 1, message="the next record is not published")
    assert sender.stats().buffered == 0


def test_the_bootstrap_probe() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert client.bootstrap_answers({"bootstrap_servers": [f"127.0.0.1:{port}"]})
        assert client.bootstrap_answers(
            {"bootstrap_servers": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}"]}
        )
    assert not client.bootstrap_answers({"bootstrap_servers": [f"127.0.0.1:{free_port()}"]})
    assert client.bootstrap_answers(
        {"bootstrap_servers": [f"127.0.0.1:{free_port()}"], "proxy_url": "socks5://proxy:1080"}
    )
