"""Checks of the image, the Kubernetes manifests, the alert rules and the Grafana dashboard."""
