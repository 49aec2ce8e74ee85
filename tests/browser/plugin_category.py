"""A category copied into a server shows in the dashboard's task form:
Debian's chromium, headless, driven by Playwright for Python. Run by
`tests/tests/plugin_author.rs`; it logs in, opens Tasks, picks the category,
checks its summary and its `prefix` field (from the plugin's params schema),
submits a task with the form and waits until its row shows it completed.
It prints each step and exits non-zero on the first failure.

Environment: STEVEDORE_URL (the server's root), STEVEDORE_USER,
STEVEDORE_PASSWORD, CATEGORY, SUMMARY, PREFIX (the value submitted),
CHROMIUM (default /usr/bin/chromium).
"""

import os
import re

from playwright.sync_api import expect, sync_playwright

URL = os.environ["STEVEDORE_URL"].rstrip("/")
USER = os.environ["STEVEDORE_USER"]
PASSWORD = os.environ["STEVEDORE_PASSWORD"]
CATEGORY = os.environ["CATEGORY"]
SUMMARY = os.environ["SUMMARY"]
PREFIX = os.environ["PREFIX"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
expect.set_options(timeout=30_000)


def step(text):
    print(f"plugin_category: {text}", flush=True)


def main():
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))

        step("log in")
        page.goto(URL + "/")
        page.get_by_label("User name").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("navigation", name="Sections")).to_be_visible()

        step(f"tasks: {CATEGORY} is in the form's categories")
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Tasks").click()
        expect(page.locator("#view-tasks")).to_be_visible()
        select = page.locator("#submit-category")
        expect(select.locator(f'option[value="{CATEGORY}"]')).to_have_count(1)
        select.select_option(CATEGORY)
        expect(page.locator("#submit-summary")).to_have_text(SUMMARY)

        step("its params schema makes the form: the prefix field")
        prefix = page.get_by_label("prefix (required)")
        expect(prefix).to_be_visible()
        prefix.fill(PREFIX)
        page.get_by_role("button", name="Submit").click()
        ok = page.locator("#submit-ok")
        expect(ok).to_have_text(re.compile(r"Task \d+ submitted\."))
        task = int(re.search(r"\d+", ok.inner_text()).group())

        step(f"task {task} completes")
        row = page.locator(f'li.task[data-task-id="{task}"]')
        expect(row).to_have_attribute("data-state", "completed", timeout=60_000)
        browser.close()
    assert not errors, f"console errors: {errors}"
    step("passed")


if __name__ == "__main__":
    main()
