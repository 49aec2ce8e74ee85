"""The dashboard in a real browser: Debian's chromium, headless, driven by
Playwright for Python. Run by `tests/tests/dashboard.rs` against a live
server; it prints each step and exits non-zero on the first failure.

Environment: STEVEDORE_URL (the server's root), STEVEDORE_USER,
STEVEDORE_PASSWORD, SCREENSHOT_DIR (where the screenshots go), CHROMIUM
(the browser, default /usr/bin/chromium).
"""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

URL = os.environ["STEVEDORE_URL"].rstrip("/")
USER = os.environ["STEVEDORE_USER"]
PASSWORD = os.environ["STEVEDORE_PASSWORD"]
SHOTS = os.environ["SCREENSHOT_DIR"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Every wait below is bounded; a task of 3 s completes well within this.
expect.set_options(timeout=20_000)

# The one request this test makes fail on purpose (a field error); the
# browser logs its status as a console error.
PROVOKED = re.compile(r"Failed to load resource: the server responded with a status of 400")


def step(text):
    print(f"dashboard: {text}", flush=True)


def bar_value(page, task_id):
    return page.evaluate(
        "id => { const b = document.querySelector(`li[data-task-id=\"${id}\"] progress`);"
        " return b && b.hasAttribute('value') ? b.value : null; }",
        task_id,
    )


def wait_bar(page, task_id, predicate_js):
    page.wait_for_function(
        "([id, min]) => { const b = document.querySelector(`li[data-task-id=\"${id}\"] progress`);"
        f" return b && b.hasAttribute('value') && {predicate_js}; }}",
        arg=[task_id, 0],
        timeout=20_000,
    )


def submitted_id(page):
    ok = page.locator("#submit-ok")
    expect(ok).to_have_text(re.compile(r"Task \d+ submitted\."))
    return int(re.search(r"\d+", ok.inner_text()).group())


def main():
    errors = []
    provoked = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 1000})

        def on_console(msg):
            if msg.type == "error":
                (provoked if PROVOKED.search(msg.text) else errors).append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

        step("open the page: the login form, focused, no request refused")
        page.goto(URL + "/")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(page.get_by_label("User name")).to_be_focused()

        step("log in with the keyboard alone")
        page.keyboard.type(USER)
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
        expect(page.locator("#who-name")).to_contain_text(USER)

        step("the submit form is built from the plugin's schema")
        page.locator("#submit-category").select_option("sleepy")
        seconds = page.get_by_label("seconds (required)")
        expect(seconds).to_be_visible()
        expect(seconds).to_have_attribute("type", "number")
        expect(page.locator("#f-seconds-desc")).to_contain_text("How long to wait")

        step("a bad value: the server's error shows next to the field it names")
        seconds.fill("4000")
        page.get_by_role("button", name="Submit").click()
        error = page.locator("#f-seconds-error")
        expect(error).to_have_text("seconds: must be at most 3600")
        expect(seconds).to_have_attribute("aria-invalid", "true")
        expect(seconds).to_be_focused()

        step("submit a 3 s task; its bar moves and it completes without a reload")
        seconds.fill("3")
        page.get_by_role("button", name="Submit").click()
        first = submitted_id(page)
        row = page.locator(f'li[data-task-id="{first}"]')
        expect(row).to_be_visible()
        expect(error).to_have_text("")
        wait_bar(page, first, "b.value > 0 && b.value < 100")
        seen = bar_value(page, first)
        page.wait_for_function(
            "([id, v]) => { const b = document.querySelector(`li[data-task-id=\"${id}\"] progress`);"
            " return b && b.value > v; }",
            arg=[first, seen],
            timeout=20_000,
        )
        step(f"bar of task {first} moved past {seen}%")
        expect(row).to_have_attribute("data-state", "completed")
        assert bar_value(page, first) == 100, bar_value(page, first)
        expect(page.locator("#tasks-status")).to_have_text(f"Task {first} (sleepy) completed.")

        step("a long task runs beside it; screenshot the page")
        seconds.fill("120")
        page.get_by_role("button", name="Submit").click()
        second = submitted_id(page)
        wait_bar(page, second, "b.value > 0")
        page.locator("#submit-category").select_option("image_download")
        expect(page.get_by_label("image", exact=True)).to_be_visible()
        page.screenshot(path=os.path.join(SHOTS, "dashboard.png"), full_page=True)

        step("filter by category")
        page.locator("#filter-category").select_option("noop")
        expect(page.locator("li.task")).to_have_count(0)
        page.locator("#filter-category").select_option("sleepy")
        expect(page.locator(f'li[data-task-id="{first}"]')).to_be_visible()
        expect(page.locator(f'li[data-task-id="{second}"]')).to_be_visible()
        expect(page.locator("li.task .cat").filter(has_not_text="sleepy")).to_have_count(0)
        page.locator("#filter-category").select_option("")

        step("cancel the running (deletable) task; delete the finished one")
        page.get_by_role("button", name=f"Cancel task {second} (sleepy)").click()
        expect(page.locator(f'li[data-task-id="{second}"]')).to_have_count(0)
        page.get_by_role("button", name=f"Delete task {first} (sleepy)").click()
        expect(page.locator(f'li[data-task-id="{first}"]')).to_have_count(0)
        expect(page.locator("#tasks-empty")).to_be_visible()

        step("on a phone: nothing wider than the screen")
        page.set_viewport_size({"width": 390, "height": 844})
        page.locator("#submit-category").select_option("sleepy")
        page.get_by_label("seconds (required)").fill("2")
        page.get_by_role("button", name="Submit").click()
        third = submitted_id(page)
        expect(page.locator(f'li[data-task-id="{third}"]')).to_be_visible()
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
        page.screenshot(path=os.path.join(SHOTS, "dashboard-phone.png"), full_page=True)

        step("a task deleted by another client leaves the list without a reload")
        third_row = page.locator(f'li[data-task-id="{third}"]')
        expect(third_row).to_have_attribute("data-state", "completed", timeout=20_000)
        # The context's own cookie, from outside the page: only the event
        # stream can tell the page.
        gone = page.request.delete(f"{URL}/api/v1/background/{third}")
        assert gone.ok, f"DELETE answered {gone.status}: {gone.text()}"
        expect(third_row).to_have_count(0)

        step("log out: back to the form")
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        browser.close()

    assert len(provoked) == 1, f"expected the one provoked 400, saw {provoked}"
    if errors:
        print("dashboard: console errors:\n  " + "\n  ".join(errors), file=sys.stderr)
        sys.exit(1)
    step("passed")


if __name__ == "__main__":
    main()
