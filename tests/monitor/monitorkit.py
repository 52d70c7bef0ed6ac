"""Helpers of the monitor's tests: an in-process island over node managers, real daemons, a headless
browser. (Named apart from other test helpers: test directories share one import namespace.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "managers"))  # daemons.py: real daemons by PID

from daemons import Cluster, Daemon, auth, free_port, start  # noqa: E402

from dropflow.engine.bus import InProcBus  # noqa: E402
from dropflow.managers.heartbeat import HeartbeatPolicy  # noqa: E402
from dropflow.managers.island import DataIslandManager  # noqa: E402
from dropflow.managers.node_manager import NodeManager  # noqa: E402

from conftest import LeakCheck, require, validate_all  # noqa: E402

__all__ = [
    "APPS_PATH",
    "Cluster",
    "Daemon",
    "auth",
    "browser",
    "free_port",
    "in_process",
    "rest_client",
    "start",
]

#: PYTHONPATH for daemons that run the test apps.
APPS_PATH = os.pathsep.join([HERE, os.path.join(TESTS, "apps")])
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@contextmanager
def in_process(
    tmp_path: Any, nodes: int = 2, policy: HeartbeatPolicy | None = None
) -> Iterator[tuple[DataIslandManager, list[NodeManager]]]:
    """An island over ``nodes`` node managers in this process (an in-process bus), checked for leaks."""
    leaks = LeakCheck([str(tmp_path / f"ws{i}") for i in range(nodes)])
    nms = [
        NodeManager(f"n{i}", workspace_root=str(tmp_path / f"ws{i}"), threads=4, processes=1)
        for i in range(nodes)
    ]
    bus = InProcBus()
    for nm in nms:
        nm.start()
        bus.add(nm.node)
    island = DataIslandManager("island", nms, heartbeat=policy)
    try:
        yield island, nms
        for nm in nms:
            validate_all(nm.node)
    finally:
        island.close()
        for nm in nms:
            nm.close()
        leaks.check()


@contextmanager
def browser(width: int = 1300, height: int = 900) -> Iterator[Any]:
    """Headless Chromium driven by Selenium with Debian's chromedriver (nothing is downloaded)."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    require("headless Chromium and Selenium", bool(chromium and driver_path), ".ci/setup/40-chromium.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium  # type: ignore[assignment]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def rest_client(manager: Any, **kw: Any) -> Iterator[Any]:
    """A falcon test client of a manager's REST app, whose request threads are stopped on the way out."""
    from falcon import testing

    from dropflow.managers.rest import make_app

    app = make_app(manager, **kw)
    try:
        yield testing.TestClient(app)
    finally:
        app.close()
