"""The peer task queues, each installed from PyPI into the benchmark's own venv (.bench/venv).

These modules import their library, which the project venv does not have, so mypy skips this
package (see pyproject.toml); they are run only by ``benchmarks/systems/driver.py`` and by the
libraries' own worker commands.
"""
