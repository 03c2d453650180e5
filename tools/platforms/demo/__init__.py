"""The local demo platform and its demo catalogue (DEMO DATA: invented experts, tiny weights).

``DemoPlatform`` serves a Civitai-compatible API, JavaScript homepages and weight downloads
on 127.0.0.1 for tests, benchmarks and ``diffgraph crawl --source demo``.
"""

from tools.platforms.demo.catalogue import DEMO_NOTICE, DemoCatalogue, DemoModel, demo_catalogue
from tools.platforms.demo.server import DemoPlatform

__all__ = ["DEMO_NOTICE", "DemoCatalogue", "DemoModel", "DemoPlatform", "demo_catalogue"]
