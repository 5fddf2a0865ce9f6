#!/usr/bin/env python3
"""The web UI in real headless Chromium (Playwright), against two real
`roost serve` daemons on loopback: sign-in (wrong token first), first-run
setup (bad inputs first), pairing the two devices through the Devices screen
(a damaged, an expired and an unreachable ticket first, then the real one,
then the same one again), the health dashboard, users, client setup (with the
autoconfig download), the event log, conflicts and backups. Every screen is
saved as a screenshot under target/screenshots/, once at phone width.

Usage: test_ui.py ROOST_BINARY [SCREENSHOT_DIR]
"""

import re
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from roost_daemon import Device

ROOT = Path(__file__).resolve().parents[2]
ROOST = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "target/debug/roost"
SHOTS = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "target/screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def labelled(page):
    """Every visible form control has a label (keyboard and screen readers)."""
    missing = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.offsetParent !== null && e.type !== 'hidden')
        .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
        .map(e => e.id || e.name)""")
    assert missing == [], f"controls without a label: {missing}"


def nav(page, name):
    page.get_by_role("navigation").get_by_role("link", name=name).click()


def ticket_with(ticket: str, **changes) -> str:
    """Re-encodes a ticket (ROOST1 + base32 of JSON) with some fields changed."""
    body = ticket[len("ROOST1"):]
    data = json.loads(base64.b32decode(body + "=" * (-len(body) % 8)))
    data.update(changes)
    return "ROOST1" + base64.b32encode(json.dumps(data).encode()).decode().rstrip("=")


def sign_in(page, device, wrong_first=False):
    page.goto(device.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    if wrong_first:
        page.get_by_label("Admin token").fill("0" * 64)
        page.get_by_label("Admin token").press("Enter")  # keyboard submit
        expect(page.locator("#login-error")).to_contain_text("That token is not right")
        labelled(page)
        shot(page, "01-sign-in-wrong-token")
    page.get_by_label("Admin token").fill(device.token)
    page.get_by_label("Admin token").press("Enter")


def setup(page, device, user):
    screen = page.locator("#screen-setup")
    expect(page.get_by_role("heading", name="First-run setup")).to_be_visible()
    expect(page.locator("#setup-data-dir")).to_have_text(str(device.dir))
    screen.get_by_label("Login name").fill(user)
    screen.get_by_label("Password", exact=True).fill("a long passphrase")
    screen.get_by_label("Repeat the password").fill("another one")
    screen.get_by_role("button", name="Set up").click()
    expect(page.locator("#setup-error")).to_have_text("The passwords do not match.")
    screen.get_by_label("Password", exact=True).fill("x")
    screen.get_by_label("Repeat the password").fill("x")
    screen.get_by_role("button", name="Set up").click()
    expect(page.locator("#setup-error")).to_contain_text("password refused")
    screen.get_by_label("My own certificate").check()
    screen.get_by_label("Certificate chain path").fill("/nonexistent/cert.pem")
    screen.get_by_label("Private key path").fill("/nonexistent/key.pem")
    screen.get_by_label("Password", exact=True).fill("a long passphrase")
    screen.get_by_label("Repeat the password").fill("a long passphrase")
    screen.get_by_role("button", name="Set up").click()
    expect(page.locator("#setup-error")).to_contain_text("cannot read /nonexistent/cert.pem")
    labelled(page)
    screen.get_by_label("This device's self-signed certificate").check()
    screen.get_by_label("Password", exact=True).fill("a long passphrase")
    screen.get_by_label("Repeat the password").fill("a long passphrase")
    screen.get_by_role("button", name="Set up").click()
    # The first user's mail is sealed to a new age identity: its recovery key
    # is shown once, here.
    expect(page.locator("#setup-done-text")).to_have_text(
        re.compile(rf"^Set up: user {user} created with 6 mailboxes\. Recovery key \(shown once; .*\): \S+$")
    )


def join(page, ticket):
    screen = page.locator("#screen-devices")
    screen.get_by_label("Ticket from the other device").fill(ticket)
    screen.get_by_role("button", name="Join").click()


def main():
    root = Path(tempfile.mkdtemp(prefix="roost-ui-"))
    a = Device(ROOST, root, "a")
    b = Device(ROOST, root, "b")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
            context.set_default_timeout(30_000)
            pa = context.new_page()
            pa.on("pageerror", lambda e: (_ for _ in ()).throw(AssertionError(f"page error: {e}")))

            sign_in(pa, a, wrong_first=True)
            setup(pa, a, "alice")
            shot(pa, "02-setup-done")

            nav(pa, "Devices")
            expect(pa.get_by_role("heading", name="Devices and pairing")).to_be_visible()
            pa.get_by_label("Valid for (minutes)").fill("0")
            pa.get_by_role("button", name="Create invite").click()
            expect(pa.locator("#invite-error")).to_contain_text("from 1 to 10080")
            pa.get_by_label("Valid for (minutes)").fill("30")
            pa.get_by_role("button", name="Create invite").click()
            ticket_box = pa.get_by_label("Ticket (paste it on the other device")
            expect(ticket_box).not_to_have_value("")
            ticket = ticket_box.input_value()
            assert ticket.startswith("ROOST1"), ticket
            qr = pa.get_by_role("img", name="QR code of the pairing ticket")
            expect(qr).to_be_visible()
            assert pa.evaluate("document.querySelector('#invite-qr').naturalWidth") > 0, "QR code did not render"
            labelled(pa)
            shot(pa, "03-devices-invite")

            pb = context.new_page()
            sign_in(pb, b)
            setup(pb, b, "bob")
            pb.get_by_role("link", name="Go to the health dashboard").click()
            nav(pb, "Devices")
            join(pb, "hello")
            expect(pb.locator("#join-error")).to_contain_text("not a Roost pairing ticket")
            join(pb, ticket_with(ticket, expires_ms=1))
            expect(pb.locator("#join-error")).to_contain_text("expired")
            join(pb, ticket_with(ticket, addrs=["127.0.0.1:9"]))
            expect(pb.locator("#join-error")).to_contain_text("cannot reach", timeout=40_000)
            expect(pb.locator("#devices-none")).to_be_visible()
            shot(pb, "04-join-unreachable")
            join(pb, ticket)
            expect(pb.locator("#join-ok")).to_contain_text("Paired with")
            expect(pb.locator("#devices-list li")).to_have_count(1)
            shot(pb, "05-join-paired")
            join(pb, ticket)
            expect(pb.locator("#join-error")).to_contain_text("already paired")

            # A sees B: in its device list, then connected on the dashboard.
            pa.reload()
            expect(pa.locator("#devices-list li")).to_have_count(1)
            nav(pa, "Health")
            row = pa.locator("#dash-peers tbody tr")
            deadline = time.time() + 30
            while "connected" not in row.first.inner_text():
                assert time.time() < deadline, "B never shown connected on A's dashboard"
                time.sleep(0.5)
                pa.reload()
            expect(row.first.locator(".pill")).to_have_text("connected")
            expect(pa.locator("#dash-plots figure")).to_have_count(1)
            expect(pa.locator("#dash-facts")).to_contain_text("Users")
            shot(pa, "06-dashboard")
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            pp = phone.new_page()
            sign_in(pp, a)
            expect(pp.get_by_role("heading", name="Health")).to_be_visible()
            expect(pp.locator("#dash-peers tbody tr")).to_have_count(1)
            width = pp.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the dashboard scrolls sideways at phone width ({width}px)"
            shot(pp, "07-dashboard-phone")
            # Every other screen fits the phone's width too.
            for screen, heading in [("Devices", "Devices and pairing"), ("Users", "Users"),
                                    ("Client setup", "Client setup"), ("Event log", "Event log"),
                                    ("Conflicts", "Conflict inspector"), ("Backups", "Backups")]:
                nav(pp, screen)
                expect(pp.get_by_role("heading", name=heading, exact=True)).to_be_visible()
                width = pp.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{screen} scrolls sideways at phone width ({width}px)"
            phone.close()

            nav(pa, "Users")
            users = pa.locator("#screen-users")
            users.get_by_label("Login name").fill("carol")
            users.get_by_label("Password", exact=True).fill("carol")
            pa.get_by_role("button", name="Add user").click()
            expect(pa.locator("#user-error")).to_contain_text("password refused")
            users.get_by_label("Password", exact=True).fill("carols long passphrase")
            pa.get_by_role("button", name="Add user").click()
            expect(pa.locator("#users-list li[data-user=carol]")).to_be_visible()
            pa.locator("#users-list li[data-user=alice]").get_by_role("button", name="Mailboxes").click()
            expect(pa.locator("#users-list li[data-user=alice] .mailboxes")).to_contain_text("INBOX: 0 messages")
            labelled(pa)
            shot(pa, "08-users")

            nav(pa, "Client setup")
            pa.locator("#screen-clients").get_by_label("User").select_option("alice")
            pa.get_by_role("button", name="Show settings").click()
            expect(pa.locator("#clients-facts")).to_contain_text("127.0.0.1")
            expect(pa.get_by_role("img", name="QR code with the IMAP settings")).to_be_visible()
            with pa.expect_download() as info:
                pa.get_by_role("button", name="Download Thunderbird autoconfig").click()
            xml = Path(info.value.path()).read_text()
            assert "<username>alice</username>" in xml, xml
            with pa.expect_download() as info:
                pa.get_by_role("button", name="Download Apple profile (.mobileconfig)").click()
            assert "com.apple.mail.managed" in Path(info.value.path()).read_text()
            shot(pa, "09-client-setup")

            nav(pa, "Event log")
            pa.locator("#screen-events").get_by_label("User").fill("carol")
            pa.get_by_role("button", name="Filter").click()
            expect(pa.locator("#events-table tbody")).to_contain_text("added user carol")
            expect(pa.locator("#events-table tbody")).not_to_contain_text("alice")
            shot(pa, "10-event-log")

            nav(pa, "Conflicts")
            expect(pa.locator("#conflicts-message")).to_have_text("No conflicts recorded.")
            shot(pa, "11-conflicts")
            nav(pa, "Backups")
            expect(pa.locator("#backups-message")).to_contain_text("Backups are off: set [backup] recipient")
            shot(pa, "12-backups")

            # Removing the pairing from A's Devices screen.
            nav(pa, "Devices")
            pa.once("dialog", lambda d: d.accept())
            pa.locator("#devices-list li").get_by_role("button").click()
            expect(pa.locator("#devices-none")).to_be_visible()
            expect(pa.locator("#flash")).to_contain_text("Removed")

            # A stale token in the browser sends the user back to sign-in.
            pa.evaluate("localStorage.setItem('roost-admin-token', 'f'.repeat(64))")
            nav(pa, "Users")
            expect(pa.get_by_role("heading", name="Sign in")).to_be_visible()
            expect(pa.locator("#login-error")).to_contain_text("wrong admin token")
            browser.close()
    finally:
        a.stop()
        b.stop()
    for d in (a, b):
        d.check_log()
    print(f"browser test passed; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
