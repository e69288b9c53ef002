"""Session-wide fixtures: real Kafka and Label Studio servers from ``tests/harness.py``."""

pytest_plugins = ["tests.harness"]
