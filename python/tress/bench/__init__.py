"""``python -m tress bench``: tress versus the standard library and peers.

Pure Python (matplotlib optional), and importing it never imports tress's
extension module: implementations are loaded when a scenario runs.

Layout:
    registry.py     the list of scenario modules (the one place to add one)
    scenarios/      one module per area, each defining ``SCENARIO``
    model.py        Implementation, Case, Scenario, Target
    measure.py      calibrated, time-boxed, interleaved measurement
    threads.py      bounded helpers for multi-thread cases
    results.py      results and their JSON form
    report.py       text table and JSON document
    machine.py      machine and version details
    plot.py         optional matplotlib chart
    cli.py          the ``bench`` subcommand
"""
