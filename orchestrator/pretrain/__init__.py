"""Pretraining: config, driver (TorchTrainer), worker (train loop), checkpoint files."""
