"""Analyses of trained models and of attack populations (Theorem-1 coverage, ...)."""
