"""The consumer service: Kafka → validate → dedup → route → Label Studio, exactly once per run_id.

Run it with ``labelstudio-ingest consume`` (see docs/CONSUMER.md); the exactly-once design is in
docs/EXACTLY_ONCE.md.
"""
