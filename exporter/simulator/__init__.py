"""A small, faithful fake of the Mixpeek API, for demo mode and the tests.

It answers as the official SDK (``mixpeek`` 1.3.783, API 0.82) expects, which the tests in
``tests/test_simulator_sdk.py`` check with the SDK's own client. Run it with
``python -m exporter.simulator --listen 127.0.0.1:8080 --api-key sk_test``.

- state.py: the stored namespaces, the rules applied when they are served, the counters
- handler.py: the API routes (auth, the rate limit, Get Namespace, stats, list, stats/batch)
- listing.py: the list endpoint's parameters and pages
- limit.py: ``--rate-limit-rpm``, at most N requests in any 60 seconds
- faults.py: error bodies and the broken answers a test can ask for
- control.py: the ``/_sim/`` API tests use to change all of the above while it runs
- server.py / cli.py: the server thread (HTTP or HTTPS) and the command line
"""

from exporter.simulator.cli import main
from exporter.simulator.faults import envelope
from exporter.simulator.handler import SimHandler
from exporter.simulator.server import Simulator
from exporter.simulator.state import DEMO_KEY, SimState, default_namespaces, make_namespace

__all__ = ["DEMO_KEY", "SimHandler", "SimState", "Simulator", "default_namespaces", "envelope",
           "main", "make_namespace"]
