#!/usr/bin/env python3
"""The desktop app (roost-desktop, Tauri 2) end to end: the real binary in its
real WebKitGTK window under Xvfb, driven through tauri-driver and
WebKitWebDriver with Selenium, against two real `roost serve` daemons on
loopback (A set up with one user and paired with B).

Session one adds device A in the window: a malformed address, an unreachable
device and a wrong token first (each a message in the window, nothing
remembered), then the right token; then B as the device on this computer
(by its data directory). The app is closed and started again (session two):
it must list both devices from its book on disk. It forgets B, opens A, and
checks what A's dashboard shows in the app window: A's name and id, one user,
B connected. The dashboard is saved as a screenshot (the README's). The link
the app adds to device pages leads back to the device list.

Usage: test_desktop.py ROOST_BINARY DESKTOP_BINARY [SCREENSHOT_DIR]
"""

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.wait import WebDriverWait

from roost_daemon import Device

ROOT = Path(__file__).resolve().parents[2]
ROOST = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "target/debug/roost"
DESKTOP = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else ROOT / "target/debug/roost-desktop"
SHOTS = Path(sys.argv[3]) if len(sys.argv) > 3 else ROOT / "target/screenshots"
WAIT_S = 30


def free_port() -> int:
    """A loopback port free right now (tauri-driver takes ports, not port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step(what: str):
    """Says how far the test got (a hang in CI then names its step)."""
    print(f"test_desktop: {what}", flush=True)


def wait_for(what: str, check, timeout=WAIT_S):
    """Polls `check` until it returns something true; fails naming `what`."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Display:
    """A private Xvfb display; `name` is its DISPLAY value."""

    def __init__(self):
        read_end, write_end = os.pipe()
        # -displayfd: Xvfb picks a free display number and writes it when ready.
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_end)
        with os.fdopen(read_end) as ready:
            number = ready.readline().strip()
        assert number.isdigit(), f"Xvfb did not start (exit {self.proc.poll()})"
        self.name = ":" + number

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Driver:
    """tauri-driver (which starts WebKitWebDriver) on random loopback ports,
    with the app's home, config and data under `home`."""

    def __init__(self, display: Display, home: Path, log: Path):
        self.port = free_port()
        self.env = dict(
            os.environ, DISPLAY=display.name, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
            XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
            # (Not WEBKIT_DISABLE_COMPOSITING_MODE: with it, WebDriver screenshots hang.)
            XDG_RUNTIME_DIR=str(home / "runtime"))
        self.env.pop("WAYLAND_DISPLAY", None)
        (home / "runtime").mkdir(parents=True, mode=0o700)
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            ["tauri-driver", "--port", str(self.port), "--native-port", str(free_port())],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        def listening():
            assert self.proc.poll() is None, f"tauri-driver exited; see {log}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for("tauri-driver to listen", listening)

    def app(self) -> webdriver.Remote:
        """Starts the app: a new WebDriver session."""
        options = ArgOptions()
        options.set_capability("browserName", "wry")
        options.set_capability("tauri:options", {"application": str(DESKTOP)})
        session = webdriver.Remote(command_executor=f"http://127.0.0.1:{self.port}", options=options)
        session.implicitly_wait(0)
        session.set_page_load_timeout(WAIT_S)
        session.set_script_timeout(WAIT_S)
        return session

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def text_of(app, css: str) -> str:
    return app.find_element(By.CSS_SELECTOR, css).text


def wait_text(app, css: str, wanted: str, timeout=WAIT_S) -> str:
    """Waits until the element at `css` shows `wanted`; its text."""
    def shown():
        try:
            text = text_of(app, css)
        except WebDriverException:
            return None
        return text if wanted in text else None
    try:
        return wait_for(f"{css} to show {wanted!r}", shown, timeout)
    except AssertionError:
        raise AssertionError(f"{css} shows {text_of(app, css)!r}, not {wanted!r}") from None


def fill(app, css: str, value: str):
    field = app.find_element(By.CSS_SELECTOR, css)
    field.clear()
    if value:
        field.send_keys(value)


def add_device(app, address: str, token: str):
    fill(app, "#address", address)
    fill(app, "#token", token)
    app.find_element(By.CSS_SELECTOR, "#add-form button[type=submit]").click()


def remembered(app) -> list:
    """The addresses the device list shows (read in one step: the list is redrawn after each change)."""
    return app.execute_script("return [...document.querySelectorAll('#devices li')].map(li => li.dataset.address)")


def device_list_session(app, a: Device, b: Device):
    """Adds A (after three bad tries) and B (as this computer's device)."""
    WebDriverWait(app, WAIT_S).until(EC.visibility_of_element_located((By.ID, "no-devices")))
    assert app.find_element(By.TAG_NAME, "h1").text == "Roost devices"
    step("session 1: bad inputs")
    add_device(app, "no port", a.token)
    wait_text(app, "#error", "is not host:port")
    add_device(app, "127.0.0.1:9", a.token)
    wait_text(app, "#error", "cannot reach 127.0.0.1:9")
    add_device(app, a.address, "0" * 64)
    wait_text(app, "#error", "wrong admin token")
    assert remembered(app) == [], "a failed add remembered a device"

    step("session 1: adding A")
    add_device(app, a.address, a.token)
    wait_text(app, "#message", "Added ")
    assert text_of(app, "#error") == ""
    assert app.find_element(By.CSS_SELECTOR, "#token").get_attribute("value") == "", "the token stays in the form"
    wait_for("A in the list", lambda: remembered(app) == [a.address])

    step("session 1: adding B as this computer's device")
    fill(app, "#data-dir", str(b.dir))
    app.find_element(By.ID, "local-add").click()
    wait_text(app, "#message", "(this computer)")
    wait_for("B in the list", lambda: remembered(app) == [a.address, b.address])
    SHOTS.mkdir(parents=True, exist_ok=True)
    app.save_screenshot(str(SHOTS / "desktop-devices.png"))


def dashboard_session(app, a: Device, b: Device, status_a: dict):
    """The restarted app lists both devices; forgets B; opens A's dashboard."""
    wait_for("the remembered devices", lambda: remembered(app) == [a.address, b.address])
    forget = app.find_element(By.CSS_SELECTOR, f'#devices li[data-address="{b.address}"] button[aria-label^="Forget"]')
    step("session 2: forgetting B")
    forget.click()
    wait_for("B forgotten", lambda: remembered(app) == [a.address])
    wait_text(app, "#message", "Forgot ")

    open_a = app.find_element(By.CSS_SELECTOR, f'#devices li[data-address="{a.address}"] button')
    assert open_a.text == "Open " + status_a["device_name"], open_a.text
    step("session 2: opening A")
    open_a.click()
    # The window now shows A's own web UI, signed in with the remembered token.
    wait_for("A's web UI", lambda: app.current_url.startswith(a.url))
    wait_text(app, "#dashboard-title", "Health")
    assert "token" not in app.current_url, f"the token stays in the address: {app.current_url}"
    wait_text(app, "#device-line", status_a["device_id"][:10])
    wait_text(app, "#dash-facts", "Users")
    terms = [e.text for e in app.find_elements(By.CSS_SELECTOR, "#dash-facts dt")]
    facts = dict(zip(terms, [e.text for e in app.find_elements(By.CSS_SELECTOR, "#dash-facts dd")]))
    assert facts["Users"] == "1", f"A has one user: {facts}"
    assert facts["Device"].startswith(f"{status_a['device_name']} ({status_a['device_id'][:10]}"), facts
    assert facts["Data directory"] == str(a.dir), facts
    b_id = b.api("GET", "/api/status")["device_id"]
    peer_row = f'#dash-peers tbody tr[data-peer="{b_id}"]'
    # The dashboard loads once; reopen it until the peer's connection shows.
    def b_connected():
        try:
            if "connected" in text_of(app, peer_row + " .pill"):
                return True
        except WebDriverException:
            pass
        # Through another screen and back: the UI reloads its data on a hash change.
        app.execute_script("location.hash = '#devices'")
        wait_text(app, "#devices-title", "Devices")
        app.execute_script("location.hash = '#dashboard'")
        wait_text(app, "#dashboard-title", "Health")
        return False
    step("session 2: waiting for B connected on A's dashboard")
    wait_for("B connected on A's dashboard", b_connected)
    wait_text(app, peer_row, b_id[:10])
    wait_text(app, "#dash-plots", b_id[:10])
    step("session 2: screenshot of A's dashboard")
    # The UI focuses each screen's heading (for keyboards); not in the picture.
    app.execute_script("document.activeElement.blur()")
    SHOTS.mkdir(parents=True, exist_ok=True)
    app.save_screenshot(str(SHOTS / "desktop-dashboard.png"))

    step("session 2: back to the device list")
    app.find_element(By.ID, "roost-desktop-devices").click()
    wait_for("the device list again", lambda: app.current_url.startswith("tauri://"))
    wait_for("A listed again (the app's commands work there)", lambda: remembered(app) == [a.address])
    assert app.find_elements(By.ID, "roost-desktop-devices") == [], "the app's own page has no link back"


def main():
    root = Path(tempfile.mkdtemp(prefix="roost-desktop-"))
    a = Device(ROOST, root, "a")
    b = Device(ROOST, root, "b")
    display = driver = None
    try:
        a.api("POST", "/api/setup", {"user": "alice", "password": "a long passphrase", "tls": {"mode": "self-signed"}})
        ticket = a.api("POST", "/api/pair/invite", {"expires_minutes": 10})["ticket"]
        b.api("POST", "/api/pair/join", {"ticket": ticket})
        status_a = a.api("GET", "/api/status")

        step("daemons up, A set up and paired with B; starting Xvfb and tauri-driver")
        display = Display()
        home = root / "home"
        driver = Driver(display, home, root / "tauri-driver.log")
        app = driver.app()
        try:
            device_list_session(app, a, b)
        finally:
            app.quit()
        book = home / "config/roost-desktop/devices.json"
        assert stat.S_IMODE(book.stat().st_mode) == 0o600, "the device book holds tokens: 0600"
        assert [d["address"] for d in json.loads(book.read_text())] == [a.address, b.address]

        step("session 2: restarting the app")
        app = driver.app()
        try:
            dashboard_session(app, a, b, status_a)
        finally:
            app.quit()
        assert [d["address"] for d in json.loads(book.read_text())] == [a.address]
    finally:
        if driver:
            driver.stop()
        if display:
            display.stop()
        a.stop()
        b.stop()
    for d in (a, b):
        d.check_log()
    print(f"desktop test passed; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
