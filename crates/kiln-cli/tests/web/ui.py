"""The hub in a browser (docs/web.md), driven by Playwright with Debian's
chromium: log in, configure a pipeline through its page, run it, watch its
log grow, find the build tagged, download its image and check its sha256,
check a tag's drawn inheritance against the API's walk and look at an
earlier event; upload a source image through the catalog's form; grant and
revoke a permission and revoke a token on a user's page; a user without
permission sees no edit control and a form posted without its CSRF token is
refused; the pages fit a phone's width; axe-core finds no serious or
critical violation on any page. Screenshots go to OUT.

usage: ui.py HUB ADMIN_PASSWORD VIEWER_PASSWORD SCRIPT_REPO OUT
"""

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect, sync_playwright

HUB, ADMIN_PW, VIEWER_PW, SCRIPTS, OUT = sys.argv[1:6]
os.makedirs(OUT, exist_ok=True)
problems = []
axe = Axe()


def api(path):
    with urllib.request.urlopen(HUB + "/api/v1" + path) as r:
        return json.load(r)


def look(page, name):
    """A screenshot, and axe's serious or critical violations."""
    page.screenshot(path=os.path.join(OUT, name + ".png"), full_page=True)
    result = axe.run(page)
    for v in result.response["violations"]:
        if v.get("impact") in ("serious", "critical"):
            problems.append(f"{name}: axe {v['id']} ({v['impact']}): {v['help']}")


def login(page, user, password):
    page.goto(HUB + "/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".who")).to_contain_text(user)


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    ctx = browser.new_context(accept_downloads=True)
    page = ctx.new_page()
    page.goto(HUB + "/login")
    look(page, "login")
    login(page, "web", ADMIN_PW)
    look(page, "dashboard")

    # Configure a pipeline through its page; the preview follows the pattern.
    page.goto(HUB + "/pipelines/-/new")
    page.get_by_label("Name", exact=True).fill("web-fw")
    page.get_by_label("Source image and version").fill("src@latest")
    page.get_by_label("Git repository URL").fill("file://" + SCRIPTS)
    page.get_by_label("Ref (branch, tag or commit)").fill("main")
    page.get_by_label("Script path (update)").fill("cam/update.sh")
    page.get_by_label("Designated builder").select_option("cam-lab")
    page.get_by_label("Target", exact=True).select_option("rel")
    page.get_by_label("Defines (NAME=VALUE, one a line)").fill("release=r1")
    page.get_by_label("Target name").fill("cam-fw-%{source_version}-w%{run}")
    expect(page.locator("#preview")).to_have_text("cam-fw-1.0-w1")
    look(page, "pipeline-new")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(HUB + "/pipelines/web-fw")

    # A hook secret, shown once.
    page.get_by_role("button", name="New github secret").click()
    if len(page.locator("#secret").inner_text()) < 32:
        problems.append("no hook secret shown")
    look(page, "hook-secret")
    page.goto(HUB + "/pipelines/web-fw")

    # Run it; follow the task's log as it grows.
    page.get_by_role("button", name="Run now").click()
    run_row = page.locator('#runs-table tr[data-run="1"]')
    expect(run_row).to_be_visible()
    look(page, "pipeline")
    task = run_row.locator("td:last-child a").inner_text()
    page.goto(f"{HUB}/tasks/{task}")
    log = page.locator("#log")
    first = log.inner_text()
    deadline = time.time() + 600
    grew = False
    while time.time() < deadline:
        state = page.locator("#task-state").inner_text()
        if log.inner_text() != first:
            grew = True
        if state not in ("FREE", "OPEN"):
            break
        time.sleep(0.5)
    if not grew:
        problems.append("the task's log did not grow on the page while it ran")
    if page.locator("#task-state").inner_text() != "CLOSED":
        problems.append("the task did not close: " + page.locator("#task-state").inner_text())
    look(page, "task")

    # The build, tagged; its image downloads with the sha256 the page shows.
    page.goto(HUB + "/builds/cam-fw-1.0-w1")
    expect(page.locator("dd").filter(has_text="rel")).to_be_visible()
    row = page.locator("tbody tr").filter(has_text=".squashfs").first
    want = row.locator("code.digest").inner_text()
    with page.expect_download() as dl:
        row.locator("a").click()
    with open(dl.value.path(), "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    if got != want:
        problems.append(f"the downloaded image has sha256 {got}, the page says {want}")
    look(page, "build")

    # A tag: the drawn inheritance is the API's walk; an earlier event.
    page.goto(HUB + "/tags/top")
    rows = page.locator("#inheritance tbody tr")
    drawn = [(r.get_attribute("data-tag"), int(r.get_attribute("data-depth"))) for r in rows.all()][1:]
    walk = [(w["tag"], w["currdepth"]) for w in api("/tags/top/inheritance?full=true")]
    if drawn != walk:
        problems.append(f"the drawn inheritance {drawn} is not the API's walk {walk}")
    look(page, "tag")
    before = api("/tags/top/history")[0]["event"]
    page.get_by_label("As of event").fill(str(before))
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".note")).to_contain_text(f"event {before}")
    if page.locator("#inheritance").count() != 0:
        problems.append("at the tag's first event the page still draws parents")
    for name, path in [("tasks", "/tasks"), ("builds", "/builds"), ("tags", "/tags"), ("targets", "/targets"),
                       ("images", "/images"), ("hosts", "/hosts"), ("users", "/users"), ("pipelines", "/pipelines")]:
        page.goto(HUB + path)
        look(page, name)

    # The catalog's upload form: src 1.0 downloaded, uploaded again as 1.1.
    page.goto(HUB + "/images")
    src = next(i for i in api("/images") if i["name"] == "src" and i["version"] == "1.0")
    with page.expect_download() as dl:
        page.locator("#image-src-1\\.0 a").click()
    page.get_by_label("Image", exact=True).fill("src")
    page.get_by_label("Version", exact=True).fill("1.1")
    page.locator("#image-file").set_input_files(dl.value.path())
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#image-src-1\\.1")).to_be_visible()
    up = [i for i in api("/images") if i["name"] == "src" and i["version"] == "1.1"]
    if not up or up[0]["sha256"] != src["sha256"]:
        problems.append(f"the uploaded image is not in the catalog with its sha256: {up}")
    look(page, "images-uploaded")

    # A user's page: grant and revoke a permission, revoke a token.
    page.goto(HUB + "/users/reader")
    page.get_by_label("Grant").fill("image")
    page.locator("#grant-form").get_by_role("button", name="Grant").click()
    expect(page.locator("ul.perms")).to_contain_text("image")
    page.get_by_role("button", name="Revoke image from reader").click()
    expect(page.locator("ul.perms")).to_have_count(0)
    page.goto(HUB + "/users/web")
    page.get_by_label("Label").fill("ci")
    page.get_by_label("Expires after (days, empty: never)").fill("30")
    page.get_by_role("button", name="New token").click()
    token = page.locator("#token").inner_text()
    look(page, "token-new")

    def whoami(tok):
        req = urllib.request.Request(HUB + "/api/v1/whoami", headers={"Authorization": "Bearer " + tok})
        try:
            with urllib.request.urlopen(req) as r:
                return json.load(r).get("name")
        except urllib.error.HTTPError as e:
            return None if e.code == 401 else f"HTTP {e.code}"

    if whoami(token) != "web":
        problems.append("the token made on the user's page does not authenticate its user")
    page.goto(HUB + "/users/web")
    look(page, "user")
    active = page.get_by_role("button", name="Revoke token")
    if active.count() != 1:
        problems.append(f"the user's page lists {active.count()} active tokens, not 1")
    else:
        active.first.click()
        expect(page.locator("tbody")).to_contain_text("revoked")
        if whoami(token) not in (None, ""):
            problems.append("a token revoked on the user's page still authenticates")

    # A user who may only read: no edit control; a forged form is refused.
    viewer = browser.new_context().new_page()
    login(viewer, "reader", VIEWER_PW)
    viewer.goto(HUB + "/pipelines/web-fw")
    if viewer.get_by_role("button", name="Save").count() or viewer.get_by_role("button", name="Run now").count():
        problems.append("a user without permission sees edit controls")
    forged = viewer.request.post(HUB + "/pipelines/web-fw/run", form={"csrf": "forged"})
    if forged.status != 403:
        problems.append(f"a forged run form answered {forged.status}, not 403")
    viewer.goto(HUB + "/images")
    if viewer.locator("#upload-form").count():
        problems.append("a user without `image` sees the upload form")
    csrf = viewer.locator('.who input[name="csrf"]').get_attribute("value")
    refused = viewer.request.post(HUB + "/images", multipart={
        "csrf": csrf, "name": "src", "version": "9.9",
        "file": {"name": "x.tar", "mimeType": "application/x-tar", "buffer": b"\0" * 1024}})
    if refused.status != 403:
        problems.append(f"an upload by a user without `image` answered {refused.status}, not 403")
    if viewer.goto(HUB + "/users").status != 403:
        problems.append("the users page answered a user who is not an admin")
    if viewer.goto(HUB + "/users/web").status != 403:
        problems.append("another user's page answered a user who is not an admin")

    # A phone's width: nothing wider than the screen but the tables, which scroll.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    login(phone, "web", ADMIN_PW)
    for name, path in [("phone-dashboard", "/"), ("phone-pipeline", "/pipelines/web-fw"),
                       ("phone-task", f"/tasks/{task}"), ("phone-tag", "/tags/top")]:
        phone.goto(HUB + path)
        wide = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if wide > 0:
            problems.append(f"{path} is {wide} px wider than a phone's screen")
        look(phone, name)
    browser.close()

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("the web UI did everything it should")
