"""Probing: config, feature cache, one trial, the Tune sweep, its MLflow records."""
