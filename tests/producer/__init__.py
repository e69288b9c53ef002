"""Tests of labelstudio_ingest.producer."""
