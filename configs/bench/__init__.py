"""Benchmark configs: the models of ``../shared/bench/torch_reference.py``, on embedded data."""
