"""Benchmark scenarios, one module per area.

Each module defines ``SCENARIO``, a :class:`tress.bench.model.Scenario`, and
imports nothing heavy at import time: implementations are loaded only when
the scenario runs.  To add one, write the module and list it in
:data:`tress.bench.registry.SCENARIO_MODULES`.
"""
