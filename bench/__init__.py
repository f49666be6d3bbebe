"""Benchmarks: a scenario generator that fills the database, and an HTTP load benchmark."""
