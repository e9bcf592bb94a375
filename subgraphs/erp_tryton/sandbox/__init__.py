"""Tryton's ``sandbox/`` slot: not an emulator but the builder and launcher of the real server.

Every system package has a ``sandbox/``; for NetSuite, Salesforce and Harvest it emulates the vendor. Tryton
is a real ERP nobody here wrote, installed from PyPI, so this slot holds what it takes to run one:
``server.TrytonSite`` (config file, ``trytond-admin``, snapshots, ``trytond -c CONF -d DB`` on loopback) and
``build`` (the demo company, run in a child process through proteus). ``p2c erp tryton init`` and the test
suite both use them.
"""

from subgraphs.erp_tryton.sandbox.server import DemoCompany, TrytonSite, free_port, stop

__all__ = ["DemoCompany", "TrytonSite", "free_port", "stop"]
