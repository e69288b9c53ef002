"""Smoke tests of the harness: the session's Kafka broker and Label Studio answer like the real thing."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from label_studio_sdk import ImportApiRequest, RoleBasedTask
from label_studio_sdk.client import LabelStudio

from tests.harness import KAFKA_TEST_CONSUMER_DEFAULTS, wait_until

pytestmark = pytest.mark.integration

LABEL_CONFIG = '<View><Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/></View>'


def test_kafka_round_trip_with_group_commit(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], kafka_admin: KafkaAdminClient
) -> None:
    topic = kafka_topic(partitions=2)
    sent = [
        (
            i % 2,
            f"key-{i}".encode(),
            f"value-{i}".encode(),
            [("run_id", str(uuid.uuid4()).encode()), ("v", b"1")],
        )
        for i in range(6)
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for partition, key, value, headers in sent:
            producer.send(topic, key=key, value=value, headers=headers, partition=partition)
        producer.flush(timeout=10)
    finally:
        producer.close()

    group = f"smoke-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **KAFKA_TEST_CONSUMER_DEFAULTS,
    )
    received: list[ConsumerRecord] = []

    def all_arrived() -> bool:
        for records in consumer.poll(timeout_ms=200).values():
            received.extend(records)
        return len(received) >= len(sent)

    try:
        wait_until(all_arrived, timeout=30, interval=0, message="the messages did not all arrive")
        consumer.commit()
    finally:
        consumer.close()

    assert sorted((r.partition, r.key, r.value, list(r.headers)) for r in received) == sorted(sent)
    committed = kafka_admin.list_group_offsets({group: None})[group]
    assert {tp: meta.offset for tp, meta in committed.items()} == {
        TopicPartition(topic, 0): 3,
        TopicPartition(topic, 1): 3,
    }


def test_label_studio_project_import_and_read_back(ls_client: LabelStudio) -> None:
    project = ls_client.projects.create(title=f"smoke-{uuid.uuid4().hex[:8]}", label_config=LABEL_CONFIG)
    assert project.id is not None
    try:
        run_id = str(uuid.uuid4())
        task = ImportApiRequest(data={"prompt": "hi", "run_id": run_id})
        imported = ls_client.projects.import_tasks(id=project.id, request=[task], return_task_ids=True)
        assert imported.task_count == 1
        task_ids = (imported.model_extra or {}).get("task_ids")  # an extra field of Label Studio Community
        assert isinstance(task_ids, list)
        assert len(task_ids) == 1

        tasks: list[RoleBasedTask] = list(ls_client.tasks.list(project=project.id))
        assert [(t.id, t.data) for t in tasks] == [(task_ids[0], {"prompt": "hi", "run_id": run_id})]
    finally:
        ls_client.projects.delete(id=project.id)
