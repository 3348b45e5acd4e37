"""Profiling: SASS and occupancy (no GPU), roofline and Nsight Compute metrics, and the
micro-profiling tools that turn them into diagnoses."""
