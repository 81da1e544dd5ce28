"""Scheduling: one batcher per loaded model, and the registry of loaded models."""
