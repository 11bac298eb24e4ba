"""Repairing a cut without fine-tuning: linear consumers, bias compensation, reconstruction."""
