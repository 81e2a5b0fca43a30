"""Figures for TensorBoard and the scripts."""
