"""Session-wide fixtures: real Kafka and Label Studio servers from ``harness.py``."""

# ``tests.harness`` when tests/ is a package, plain ``harness`` when pytest puts tests/ on sys.path.
pytest_plugins = [f"{__package__}.harness" if __package__ else "harness"]
