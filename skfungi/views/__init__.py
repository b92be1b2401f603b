"""Seeded, per-sample views of raw inputs, one module per modality."""
