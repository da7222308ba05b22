"""Reasoning: rank, explain and calibrate links with a trained kgemb model."""
