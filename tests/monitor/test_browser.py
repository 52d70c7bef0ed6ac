"""The web monitor in headless Chromium, against real daemons that require a token.

Two node managers under an island run a chain of sleeps (so progress advances for a few seconds) and a
Python function that prints and fails. The browser first meets the login form, gives the token once, then:
the sessions page lists the running session; the session page's progress advances while it runs; the
failures tab shows the failed drop's cause, and its page shows its log (wall-clock times) and the end of
what it wrote to standard error. A larger session (100,000 drops) loads and a group drills down to pages of
drops. Screenshots go to the test's directory.
"""

from __future__ import annotations

import re
import time

import pytest
from monitorkit import APPS_PATH, browser, start

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, SleepSpec
from dropflow.managers.client import RestClient

from conftest import poll_for

TOKEN = "monitor-test-token"


@pytest.fixture
def cluster(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = {"PYTHONPATH": APPS_PATH}
    daemons = []
    try:
        for i in range(2):
            daemons.append(
                start(
                    "nm",
                    "--workspace",
                    str(tmp_path / f"ws{i}"),
                    "--token-file",
                    str(token_file),
                    logdir=str(tmp_path),
                    name=f"n{i}",
                    env=env,
                )
            )
        dim = start(
            "dim",
            "--nodes",
            ",".join(d.url for d in daemons),
            "--token-file",
            str(token_file),
            logdir=str(tmp_path),
            name="island",
            env=env,
        )
        daemons.insert(0, dim)
        yield dim, RestClient(dim.url, token=TOKEN)
    finally:
        for d in daemons:
            d.stop()


def chain(steps: int, seconds: float) -> list:
    specs = [MemorySpec(id="start", node="n0", data=0, codec="json")]
    prev = "start"
    for i in range(steps):
        node = f"n{i % 2}"
        specs += [
            SleepSpec(
                id=f"step#{i}", seconds=seconds, inputs={"i": prev}, outputs={"o": f"out#{i}"}, node=node
            ),
            MemorySpec(id=f"out#{i}", node=node),
        ]
        prev = f"out#{i}"
    specs.append(PythonSpec(id="bad", func="monfuncs:shout_and_fail", node="n1"))
    return specs


def settled(driver) -> int:
    text = driver.find_element("id", "progress-text").text
    m = re.match(r"([\d,]+) of ([\d,]+) drops settled", text)
    return int(m.group(1).replace(",", "")) if m else -1


def test_the_monitor_in_a_browser(cluster, tmp_path):
    dim, client = cluster
    client.create_session("demo")
    client.append("demo", chain(14, 0.6))
    client.deploy("demo")
    with browser() as d:
        d.get(dim.url + "/")
        token = poll_for(lambda: d.find_elements("id", "token"), timeout=20)[0]
        d.save_screenshot(str(tmp_path / "login.png"))
        token.send_keys(TOKEN)
        d.find_element("css selector", "#login button").click()

        # The sessions page lists the running session.
        row = poll_for(
            lambda: d.find_elements("css selector", '#sessions tr[data-session="demo"]'), timeout=20
        )[0]
        assert "RUNNING" in row.text
        d.save_screenshot(str(tmp_path / "sessions.png"))

        # Its page's progress advances while it runs, without reloading.
        row.find_element("link text", "demo").click()
        poll_for(lambda: settled(d) >= 0, timeout=20)
        seen = [settled(d)]
        for _ in range(2):
            poll_for(lambda: settled(d) > seen[-1], timeout=20)
            seen.append(settled(d))
        assert seen == sorted(seen) and len(set(seen)) == 3
        assert "RUNNING" in d.find_element("id", "session-state").text
        groups = {
            r.get_attribute("data-group"): r.text for r in d.find_elements("css selector", "#groups tbody tr")
        }
        assert {"step", "out", "memory"} <= set(groups) and "sleep" in groups["step"]
        d.save_screenshot(str(tmp_path / "session.png"))

        # A failed drop's cause, then its log and the end of its standard error.
        d.find_element("id", "tab-failures").click()
        cause = poll_for(
            lambda: d.find_elements("css selector", '.failure[data-uid="bad"] pre.cause'), timeout=20
        )[0]
        assert "ValueError: boom: the shout failed" in cause.text
        d.save_screenshot(str(tmp_path / "failures.png"))
        d.find_element("css selector", '.failure[data-uid="bad"] a').click()
        rows = poll_for(lambda: d.find_elements("css selector", "#drop-log tbody tr"), timeout=20)
        assert [r.find_elements("tag name", "td")[2].text for r in rows] == ["RUNNING", "ERROR"]
        assert rows[0].text.startswith(time.strftime("%Y-%m-%d"))  # wall-clock times
        assert "shouting to standard error" in d.find_element("id", "stderr").text
        assert "starting the shout" in d.find_element("id", "stdout").text
        assert "boom: the shout failed" in d.find_element("id", "drop-error").text
        d.save_screenshot(str(tmp_path / "drop.png"))

        # The session ends; the page says so by itself.
        d.back()
        d.back()
        poll_for(lambda: "FAILED" in d.find_element("id", "session-state").text, timeout=60)
        assert settled(d) == 30


def test_a_large_session_loads_and_drills_down(cluster, tmp_path):
    dim, client = cluster
    n = 25_000  # 100,000 drops in all
    specs = [MemorySpec(id="root", node="n0")]
    for i in range(n):
        node = f"n{i % 2}"
        specs += [
            NoopSpec(id=f"split#{i}", inputs={"i": "root"}, outputs={"o": f"part#{i}"}, node=node),
            MemorySpec(id=f"part#{i}", node=node),
            SleepSpec(
                id=f"work#{i}", seconds=600, inputs={"i": f"part#{i}"}, outputs={"o": f"res#{i}"}, node=node
            ),
            MemorySpec(id=f"res#{i}", node=node),
        ]
    client.create_session("big")
    client.append("big", specs)
    client.deploy("big")
    try:
        with browser() as d:
            d.get(dim.url + f"/?token={TOKEN}#/session/big")
            assert "token=" not in d.current_url  # taken from the address bar at once
            poll_for(lambda: settled(d) > 0, timeout=60)
            rows = {
                r.get_attribute("data-group"): r for r in d.find_elements("css selector", "#groups tbody tr")
            }
            assert set(rows) == {"memory", "split", "part", "work", "res"}
            rows["work"].click()
            info = poll_for(
                lambda: (t := d.find_element("id", "drill-info").text) and "of" in t and t, timeout=30
            )
            assert info == "1\u2013100 of 25,000", info
            assert len(d.find_elements("css selector", "#drops tbody tr")) == 100
            d.find_element("css selector", "#drill button:nth-of-type(2)").click()  # next page
            poll_for(lambda: d.find_element("id", "drill-info").text.startswith("101\u2013200"), timeout=30)
            d.save_screenshot(str(tmp_path / "big.png"))
    finally:
        client.cancel("big")
        poll_for(lambda: client.status("big") == "CANCELLED", timeout=60)
