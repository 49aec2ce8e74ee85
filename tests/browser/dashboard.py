"""The dashboard in a real browser: Debian's chromium, headless, driven by
Playwright for Python. Run by `tests/tests/dashboard.rs` against a live
server on the real engine with a copy of the test repository; it prints
each step, `report:` lines with figures, and exits non-zero on the first
failure.

As a new user would, it logs in with the keyboard, finds `notes` in the
store and installs it through its wizard (a field error first), opens the
app's port, follows a container's logs until a line it caused appears,
stops and starts the app, pulls and removes an image, sees "update
available" once the repository's version changes and upgrades, then works
with tasks as before. Every view is checked with axe-core (light and dark),
at a phone's width, with no console error and no request leaving 127.0.0.1.
Then it measures the first render of the task list with 1,000 tasks.

Environment: STEVEDORE_URL (the server's root), STEVEDORE_USER,
STEVEDORE_PASSWORD, SCREENSHOT_DIR, AXE_JS (axe.min.js), CATALOG_DIR (the
server's repository folder, edited here), NOTES_V2_IMAGE (the image of
notes's next version), PULL_IMAGE, APP_NAME, APP_PORT, BULK_USER and
BULK_PASSWORD (a user with 1,000 tasks), CHROMIUM (default /usr/bin/chromium).
"""

import json
import os
import re
import secrets
import statistics
import sys
import time
import urllib.parse

from playwright.sync_api import expect, sync_playwright

URL = os.environ["STEVEDORE_URL"].rstrip("/")
API = URL + "/api/v1"
USER = os.environ["STEVEDORE_USER"]
PASSWORD = os.environ["STEVEDORE_PASSWORD"]
SHOTS = os.environ["SCREENSHOT_DIR"]
AXE_SOURCE = open(os.environ["AXE_JS"], encoding="utf-8").read()
CATALOG = os.environ["CATALOG_DIR"]
NOTES_V2 = os.environ["NOTES_V2_IMAGE"]
PULL_IMAGE = os.environ["PULL_IMAGE"]
APP = os.environ["APP_NAME"]
PORT = int(os.environ["APP_PORT"])
BULK_USER = os.environ["BULK_USER"]
BULK_PASSWORD = os.environ["BULK_PASSWORD"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Every wait below is bounded; pulls come from the local registry.
expect.set_options(timeout=30_000)
SLOW = 180_000

# The one request this test makes fail on purpose (a task's field error);
# the browser logs its status as a console error.
PROVOKED = re.compile(r"Failed to load resource: the server responded with a status of 400")

VIEWS = ["store", "apps", "containers", "images", "tasks"]


def step(text):
    print(f"dashboard: {text}", flush=True)


def report(text):
    print(f"report: {text}", flush=True)


def shot(page, name, full_page=True):
    page.screenshot(path=os.path.join(SHOTS, f"dashboard-{name}.png"), full_page=full_page)


accessibility = []


def axe(page, view):
    """axe-core on the page as it is, light and dark: serious and critical
    violations are collected (and fail the test at the end)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SOURCE)
    for scheme in ["light", "dark"]:
        page.emulate_media(color_scheme=scheme)
        found = page.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ['violations']});
                return r.violations
                  .filter(v => v.impact === 'serious' || v.impact === 'critical')
                  .map(v => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`);
            }"""
        )
        for v in found:
            accessibility.append(f"{view} [{scheme}]: {v}")
    page.emulate_media(color_scheme="light")
    step(f"axe-core: {view} checked, light and dark")


def no_wider_than_the_screen(page, view):
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{view}: the page is {overflow}px wider than a phone's screen"


def go(page, view):
    page.get_by_role("navigation", name="Sections").get_by_role("link", name=NAV[view]).click()
    expect(page.locator(f"#view-{view}")).to_be_visible()
    expect(page.locator(f"#{view}-title")).to_be_visible()


NAV = {
    "store": "App store",
    "apps": "Applications",
    "containers": "Containers",
    "images": "Images",
    "tasks": "Tasks",
}


def poll(what, check, seconds=60):
    """Ask `check` until it returns a true value, within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.25)


def api(page, path):
    resp = page.request.get(API + path)
    assert resp.ok, f"GET {path}: {resp.status} {resp.text()}"
    return resp.json()


def app_states(page):
    return [c["state"] for c in api(page, f"/apps/{APP}")["containers"]]


def set_notes_version(version, image):
    """The repository's `notes` moves to `version`, its web service to `image`."""
    compose = os.path.join(CATALOG, "template/notes/docker-compose.yml")
    lines = open(compose, encoding="utf-8").read().splitlines()
    out, in_web = [], False
    for line in lines:
        if line.startswith("  ") and not line.startswith("   "):
            in_web = line.strip() == "web:"
        out.append(f"    image: {image}" if in_web and line.strip().startswith("image:") else line)
    open(compose, "w", encoding="utf-8").write("\n".join(out) + "\n")
    path = os.path.join(CATALOG, "list.json")
    entries = json.load(open(path, encoding="utf-8"))
    for e in entries:
        if e["name"] == "notes":
            e["version"] = version
    json.dump(entries, open(path, "w", encoding="utf-8"))


def png(width, height, rgb):
    """A solid-colour PNG, for the repository's `notes` icon."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def give_notes_an_icon():
    """`notes` gets an icon file of the repository's own; the others keep
    theirs, which point at hosts that do not answer (placeholders)."""
    os.makedirs(os.path.join(CATALOG, "icons"), exist_ok=True)
    open(os.path.join(CATALOG, "icons/notes.png"), "wb").write(png(48, 48, (31, 95, 191)))
    path = os.path.join(CATALOG, "list.json")
    entries = json.load(open(path, encoding="utf-8"))
    for e in entries:
        if e["name"] == "notes":
            e["icon"] = "icons/notes.png"
    json.dump(entries, open(path, "w", encoding="utf-8"))


def submitted_id(page):
    ok = page.locator("#submit-ok")
    expect(ok).to_have_text(re.compile(r"Task \d+ submitted\."))
    return int(re.search(r"\d+", ok.inner_text()).group())


def bar_value(page, task_id):
    return page.evaluate(
        "id => { const b = document.querySelector(`li[data-task-id=\"${id}\"] progress`);"
        " return b && b.hasAttribute('value') ? b.value : null; }",
        task_id,
    )


def main():
    errors, provoked, outside = [], [], []

    def on_request(request):
        host = urllib.parse.urlparse(request.url).hostname
        if request.url.startswith("data:"):
            return
        if host != "127.0.0.1":
            outside.append(request.url)

    give_notes_an_icon()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        context.on("request", on_request)
        page = context.new_page()

        def on_console(msg):
            if msg.type == "error":
                (provoked if PROVOKED.search(msg.text) else errors).append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

        step("1. open the page: the login form, focused")
        page.goto(URL + "/")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(page.get_by_label("User name")).to_be_focused()
        axe(page, "login")

        step("1. log in with the keyboard alone")
        page.keyboard.type(USER)
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
        expect(page.locator("#who-name")).to_contain_text(USER)
        # The keyboard reaches the sections: Tab (at most through every
        # control of the page) lands on the first section's link; Enter opens it.
        store_link = page.get_by_role("link", name="App store")
        for _ in range(40):
            page.keyboard.press("Tab")
            if store_link.evaluate("a => a === document.activeElement"):
                break
        expect(store_link).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_label("Search apps")).to_be_visible()

        step("2. the store: find notes by search")
        go(page, "store")
        search = page.get_by_label("Search apps")
        cards = page.locator("article.app-card")
        expect(cards.first).to_be_visible()
        # This host's architecture only: the armhf gitlab is not listed.
        expect(page.locator('article.app-card[data-name="gitlab"]')).to_have_count(1)
        card = page.locator('article.app-card[data-name="notes"]')
        # Its icon comes through the server (the page loads nothing from
        # elsewhere), decoded as the repository's 48 px PNG.
        icon = card.locator("img")
        expect(icon).to_have_count(1)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth === 48",
            arg=icon.element_handle(),
        )
        assert icon.get_attribute("src").startswith("/api/v1/catalog/icon/"), icon.get_attribute("src")
        shot(page, "store")
        axe(page, "store")
        search.fill("notes")
        expect(card).to_be_visible()
        expect(page.locator('article.app-card[data-name="wordpress"]:visible')).to_have_count(0)

        step("2. install notes through its wizard: a field error, then its correction")
        card.get_by_role("button", name=re.compile(r"^Install ")).click()
        wizard = page.locator("dialog#wizard")
        expect(wizard).to_be_visible()
        wizard.get_by_label("Application name", exact=False).fill(APP)
        port = wizard.locator("#w-http_port")
        port.fill("70000")
        wizard.get_by_role("button", name="Install", exact=True).click()
        expect(page.locator("#w-http_port-error")).to_contain_text("65535")
        expect(port).to_have_attribute("aria-invalid", "true")
        expect(port).to_be_focused()
        shot(page, "wizard")
        axe(page, "wizard")
        port.fill(str(PORT))
        wizard.get_by_role("button", name="Install", exact=True).click()
        expect(page.locator("#w-http_port-error")).to_have_text("")
        expect(wizard.locator('.taskbar[data-state="completed"]')).to_be_visible(timeout=SLOW)
        wizard.get_by_role("link", name=f"Open {APP}").click()

        step("3. the app's port link serves its page")
        app = page.locator(f'article.app[data-app="{APP}"]')
        expect(app).to_be_visible()
        link = app.locator("a.port-link").first
        expect(link).to_have_attribute("href", f"http://127.0.0.1:{PORT}/")
        with context.expect_page() as opened:
            link.click()
        site = opened.value
        site.wait_for_load_state()
        expect(site.locator("body")).to_contain_text("noted")
        site.close()
        shot(page, "apps")
        axe(page, "apps")

        step("4. the app's containers, and one's logs followed live")
        go(page, "containers")
        web = f"{APP}_web_1"
        row = page.locator(f'tr[data-container="{web}"]')
        expect(row).to_be_visible()
        expect(page.locator(f'tr[data-container="{APP}_writer_1"]')).to_be_visible()
        page.get_by_role("button", name=f"Logs of {web}").click()
        output = page.locator("#logs-output")
        expect(output).to_be_visible()
        token = f"/probe-{secrets.token_hex(6)}"
        resp = page.request.get(f"http://127.0.0.1:{PORT}{token}")
        assert resp.status == 404, resp.status
        expect(output).to_contain_text(f"url:{token}", timeout=20_000)
        step(f"the line for {token} arrived")
        page.get_by_role("button", name="Pause").click()
        later = f"/probe-{secrets.token_hex(6)}"
        page.request.get(f"http://127.0.0.1:{PORT}{later}")
        expect(page.locator("#logs-panel")).to_contain_text(re.compile(r"paused \(\d+ new line"))
        assert f"url:{later}" not in output.inner_text(), "a paused panel went on appending"
        page.get_by_role("button", name="Resume").click()
        expect(output).to_contain_text(f"url:{later}")
        shot(page, "logs")
        axe(page, "containers")

        step("5. stop and start the app")
        go(page, "apps")
        page.get_by_role("button", name=f"Stop {APP}", exact=True).click()
        poll("the app's containers stopped", lambda: all(s != "running" for s in app_states(page)))
        expect(app.locator(".state", has_text="running")).to_have_count(0)
        page.get_by_role("button", name=f"Start {APP}", exact=True).click()
        poll("the app's containers run again", lambda: all(s == "running" for s in app_states(page)))
        expect(app.locator(".state", has_text="running").first).to_be_visible()

        step("6. pull an image, then remove it")
        go(page, "images")
        page.get_by_label("Image to pull").fill(PULL_IMAGE)
        page.get_by_role("button", name="Pull", exact=True).click()
        expect(page.locator('#view-images .taskbar[data-state="completed"]').last).to_be_visible(timeout=SLOW)
        image_row = page.locator(f'tr[data-image="{PULL_IMAGE}"]')
        expect(image_row).to_be_visible()
        # Pulled again, it is there already: the task ends at once, maybe
        # before the submit's answer reaches the page; its bar still ends.
        page.get_by_label("Image to pull").fill(PULL_IMAGE)
        page.get_by_role("button", name="Pull", exact=True).click()
        expect(page.locator('#view-images .taskbar[data-state="completed"]')).to_have_count(2)
        shot(page, "images")
        axe(page, "images")
        page.get_by_role("button", name=f"Remove {PULL_IMAGE}", exact=True).click()
        page.get_by_role("button", name=f"Confirm remove {PULL_IMAGE}", exact=True).click()
        expect(image_row).to_have_count(0)
        local = api(page, "/image?category=local")["results"]
        assert not any(f"{r['name']}:{r['version']}" == PULL_IMAGE for r in local), "the image is still there"

        step("7. the repository's version changes: update available, then upgrade")
        set_notes_version("2", NOTES_V2)
        go(page, "apps")
        update = app.locator(".update")
        expect(update).to_contain_text("1 → 2")
        page.get_by_role("button", name=f"Upgrade {APP}", exact=True).click()
        expect(app.locator('.taskbar[data-state="completed"]')).to_be_visible(timeout=SLOW)
        poll("the app is at version 2", lambda: api(page, f"/apps/{APP}")["version"] == "2")
        expect(update).to_have_count(0)
        poll("the upgraded app runs", lambda: all(s == "running" for s in app_states(page)))

        step("tasks: the form from the plugin's schema; a server error beside its field")
        go(page, "tasks")
        page.locator("#submit-category").select_option("sleepy")
        seconds = page.get_by_label("seconds (required)")
        expect(seconds).to_have_attribute("type", "number")
        seconds.fill("4000")
        page.get_by_role("button", name="Submit").click()
        error = page.locator("#f-seconds-error")
        expect(error).to_have_text("seconds: must be at most 3600")
        expect(seconds).to_have_attribute("aria-invalid", "true")
        expect(seconds).to_be_focused()

        step("tasks: a 3 s task's bar moves and it completes without a reload")
        seconds.fill("3")
        page.get_by_role("button", name="Submit").click()
        first = submitted_id(page)
        task_row = page.locator(f'li[data-task-id="{first}"]')
        expect(task_row).to_be_visible()
        box = task_row.bounding_box()
        page.wait_for_function(
            "id => { const b = document.querySelector(`li[data-task-id=\"${id}\"] progress`);"
            " return b && b.hasAttribute('value') && b.value > 0 && b.value < 100; }",
            arg=first,
        )
        seen = bar_value(page, first)
        page.wait_for_function(
            "([id, v]) => { const b = document.querySelector(`li[data-task-id=\"${id}\"] progress`);"
            " return b && b.value > v; }",
            arg=[first, seen],
        )
        expect(task_row).to_have_attribute("data-state", "completed")
        assert bar_value(page, first) == 100
        after = task_row.bounding_box()
        assert (box["y"], box["height"]) == (after["y"], after["height"]), f"the row moved: {box} → {after}"
        expect(page.locator("#tasks-status")).to_have_text(f"Task {first} (sleepy) completed.")

        step("tasks: an opened task shows its own log lines")
        install = max(t["id"] for t in api(page, "/background/") if t["category"] == "application")
        page.get_by_role("button", name=f"Log of task {install} (application)").click()
        lines = page.locator(f'li[data-task-id="{install}"] .log li')
        expect(lines.first).to_be_visible()
        assert lines.count() > 0
        axe(page, "tasks")

        step("tasks: cancel a running task, delete a finished one, filter")
        seconds.fill("120")
        page.get_by_role("button", name="Submit").click()
        second = submitted_id(page)
        # An admin sees every user's tasks (the 1,000 noops too), none of
        # category `create`.
        page.locator("#filter-category").select_option("create")
        expect(page.locator("li.task")).to_have_count(0)
        page.locator("#filter-category").select_option("")
        page.get_by_role("button", name=f"Cancel task {second} (sleepy)").click()
        expect(page.locator(f'li[data-task-id="{second}"]')).to_have_count(0)
        page.get_by_role("button", name=f"Delete task {first} (sleepy)").click()
        expect(page.locator(f'li[data-task-id="{first}"]')).to_have_count(0)

        step("a task deleted by another client leaves the list without a reload")
        third = page.request.post(f"{API}/background/noop", data={})
        assert third.ok, third.text()
        third = third.json()["id"]
        third_row = page.locator(f'li[data-task-id="{third}"]')
        expect(third_row).to_have_attribute("data-state", "completed")
        gone = page.request.delete(f"{API}/background/{third}")
        assert gone.ok, f"DELETE answered {gone.status}: {gone.text()}"
        expect(third_row).to_have_count(0)
        shot(page, "tasks", full_page=False)

        step("on a phone: every view fits the screen")
        page.set_viewport_size({"width": 390, "height": 844})
        for view in VIEWS:
            go(page, view)
            no_wider_than_the_screen(page, view)
            shot(page, f"phone-{view}", full_page=view != "tasks")

        step("delete the app")
        page.set_viewport_size({"width": 1100, "height": 1000})
        go(page, "apps")
        page.get_by_role("button", name=f"Delete {APP}", exact=True).click()
        page.get_by_role("button", name=f"Confirm remove {APP}", exact=True).click()
        expect(app).to_have_count(0)

        step("log out: back to the form")
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        context.close()

        step("first render of the task list with 1,000 tasks")
        times = []
        for _ in range(7):
            ctx = browser.new_context(viewport={"width": 1100, "height": 1000})
            ctx.on("request", on_request)
            r = ctx.request.post(f"{API}/login", data={"username": BULK_USER, "password": BULK_PASSWORD})
            assert r.ok, r.text()
            ctx.add_init_script("sessionStorage.setItem('stevedore.signedIn', '1')")
            bulk = ctx.new_page()
            bulk.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            bulk.goto(URL + "/#tasks")
            bulk.wait_for_function("() => performance.getEntriesByName('tasks-rendered').length > 0")
            times.append(bulk.evaluate("() => performance.getEntriesByName('tasks-rendered')[0].startTime"))
            # The newest rows come first, the older ones right after.
            expect(bulk.locator("li.task").first).to_be_visible()
            expect(bulk.locator("li.task")).to_have_count(1000)
            ctx.close()
        report(
            "dashboard: first render of the task list with 1,000 tasks in the store (navigation start → "
            "the newest 100 rows in the page; the rest follow in chunks), "
            f"median {statistics.median(times):.0f} ms over {len(times)} loads "
            f"(min {min(times):.0f}, max {max(times):.0f})"
        )
        browser.close()

    assert len(provoked) == 1, f"expected the one provoked 400, saw {provoked}"
    failed = False
    if outside:
        print("dashboard: requests left 127.0.0.1:\n  " + "\n  ".join(outside), file=sys.stderr)
        failed = True
    if accessibility:
        print("dashboard: serious or critical accessibility violations:\n  " + "\n  ".join(accessibility), file=sys.stderr)
        failed = True
    if errors:
        print("dashboard: console errors:\n  " + "\n  ".join(errors), file=sys.stderr)
        failed = True
    if failed:
        sys.exit(1)
    step("passed")


if __name__ == "__main__":
    main()
