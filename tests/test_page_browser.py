"""The built-in page and dashboard in a real browser (issue 16 item 5): the OS's headless
Chromium driven by Playwright for Python (never a browser download), against a real server
whose content stage is the local fake DeepSeek (made slow or made to fail per test) and whose
vision stage is the offline provider, so the palette comes from the image's real pixels.

Every test fails on a console error, an uncaught page error or a CSP violation. The module
takes screenshots of the page (light and dark) and the dashboard: into a temporary folder, or,
with ``SCREENSHOTS=docs``, into docs/screenshots/ (the README shows those), so an ordinary
test run leaves the checkout as it was.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.fake_ai import (
    CONTENT,
    DEEPSEEK_KEY,
    FakeAI,
    deepseek_answer,
    deepseek_error,
    serve_fake_ai,
)
from tests.support import ROOT, Server, start_server, wait_for_status
from tests.test_budgets import spend

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and os.path.exists(p)), None
)
if CHROMIUM is None:
    pytest.skip("no Chromium: /usr/bin/chromium is missing and none is on PATH (.ci/run installs "
                "the OS package)", allow_module_level=True)  # fmt: skip
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("SCREENSHOTS") == "docs"
    else Path(tempfile.mkdtemp(prefix="vp-screenshots-"))
)
TIMEOUT_MS = 20_000


def brand_png(color: tuple[int, int, int], size: tuple[int, int] = (320, 220)) -> bytes:
    """A plain field of ``color`` with a white mark: what a brand image often is."""
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.38, h * 0.3, w * 0.62, h * 0.3 + w * 0.24), fill=(255, 255, 255))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


RED = (214, 32, 40)


def data_url(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode()


def is_red(hex_code: str) -> bool:
    r, g, b = (int(hex_code[i : i + 2], 16) for i in (1, 3, 5))
    return r > 150 and g < 90 and b < 90


# --- servers and the browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAI]:
    with serve_fake_ai() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeAI) -> Iterator[Server]:
    """Local mode (the local user is an admin); DeepSeek is the fake, Gemini the offline one."""
    tmp = tmp_path_factory.mktemp("page")
    srv = start_server(
        tmp / "jobs.db", tmp / "server.log", JWT_SECRET="", PROVIDERS="auto",
        DEEPSEEK_API_KEY=DEEPSEEK_KEY, DEEPSEEK_BASE_URL=fake.deepseek_url,
        PROVIDER_TIMEOUT_SECONDS="20", NO_PROXY="127.0.0.1,localhost",
    )  # fmt: skip
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """JWT_SECRET set: no session means "not signed in"."""
    tmp = tmp_path_factory.mktemp("page-jwt")
    srv = start_server(tmp / "jobs.db", tmp / "server.log", "--no-worker")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclasses.dataclass
class Tab:
    page: Any
    base: str
    problems: list[str]

    def open(self, path: str) -> None:
        """Go to ``path`` and wait for its script to have started (its "Loading…" gone)."""
        self.page.goto(self.base + path)
        self.page.wait_for_selector("#boot", state="hidden")

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).inner_text())


def _watch(page: Any, problems: list[str]) -> None:
    def console(message: Any) -> None:
        if message.type in ("error", "warning") or "Content Security Policy" in message.text:
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))


@pytest.fixture()
def open_tab(browser: Any, fake: FakeAI) -> Iterator[Any]:
    """Opens pages; at the end, fails the test on any console error or CSP violation."""
    fake.reset()
    contexts: list[Any] = []
    problems: list[str] = []

    def make(srv: Server, *, dark: bool = False, tls_proxy: bool = False) -> Tab:
        # tls_proxy: as behind a TLS proxy, so the session cookie is SameSite=None; Secure
        # (over plain http it is SameSite=Lax).
        headers = {"x-forwarded-proto": "https"} if tls_proxy else None
        context = browser.new_context(
            color_scheme="dark" if dark else "light",
            viewport={"width": 1240, "height": 900},
            extra_http_headers=headers,
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        _watch(page, problems)
        return Tab(page, srv.base, problems)

    yield make
    for context in contexts:
        context.close()
    assert not problems, "\n".join(problems)


def api(srv: Server) -> httpx.Client:
    return httpx.Client(base_url=srv.trpc, timeout=30)


def create_job(
    srv: Server, image_url: str, purpose: str = "launch posts", *, cache: bool = False
) -> int:
    """A job through the API; fresh answers unless ``cache`` (the tests script the fake
    providers per job: a cached answer would skip their slow or failing reply)."""
    with api(srv) as client:
        job = {"imageUrl": image_url, "analysisPurpose": purpose,
               "outputFormat": "social_media_post", "cache": cache}  # fmt: skip
        r = client.post("/visionPipeline.createJob", json=job)
        assert r.status_code == 200, r.text
        return int(r.json()["result"]["data"]["jobId"])


def finished(srv: Server, job_id: int) -> dict[str, Any]:
    with api(srv) as client:
        return wait_for_status(client, job_id)


def slow_content(fake: FakeAI, seconds: float) -> None:
    fake.deepseek.will(dataclasses.replace(deepseek_answer(), delay=seconds))


def fail_content(fake: FakeAI) -> None:
    # 400 is a request the provider will never accept: the job fails at once (no retry).
    fake.deepseek.will(deepseek_error(400, "The prompt is not allowed"))


def swatches(tab: Tab) -> list[str]:
    return [str(h) for h in tab.page.locator("#result .swatch").evaluate_all(
        "items => items.map(i => i.dataset.hex)")]  # fmt: skip


def expect_complete(tab: Tab) -> None:
    expect = sync_api.expect
    expect(tab.page.locator("#status")).to_contain_text("Complete", timeout=TIMEOUT_MS)
    expect(tab.page.locator("#result .swatch").first).to_be_visible()


# --- the page --------------------------------------------------------------------------------


def test_a_url_job_reaches_complete_live_with_red_swatches(
    server: Server, open_tab: Any, fake: FakeAI
) -> None:
    """The URL path: the page starts the job and follows it over onJobProgress to the end."""
    red = data_url(brand_png(RED))
    slow_content(fake, 1.5)  # long enough to see the content stage live
    tab = open_tab(server)
    tab.open("/")
    tab.page.fill("#url", red)
    tab.page.fill("#purpose", "launch posts for a red running shoe")
    tab.page.click("#start-button")
    sync_api.expect(tab.page.locator("#stages li.current")).to_have_attribute(
        "data-stage", "deepseek_generating")  # fmt: skip
    expect_complete(tab)
    assert "job=" in tab.page.url
    found = swatches(tab)
    assert found and is_red(found[0]), found
    assert tab.page.locator("#result .piece").count() == len(CONTENT["content_pieces"])
    assert "cost" in tab.text("#usage")
    sync_api.expect(tab.page.locator("#usage")).to_contain_text("tokens")


def test_a_red_png_is_uploaded_and_its_job_completes_with_red_swatches(
    server: Server, open_tab: Any, tmp_path: Path
) -> None:
    png = tmp_path / "red.png"
    png.write_bytes(brand_png(RED))
    tab = open_tab(server)
    tab.open("/")
    tab.page.set_input_files("#file", str(png))
    sync_api.expect(tab.page.locator("#preview")).to_be_visible()
    tab.page.fill("#purpose", "posts for a red brand")
    tab.page.click("#start-button")
    expect_complete(tab)
    assert all(is_red(h) for h in swatches(tab)[:1])
    src = tab.page.locator("#history-list li.selected img").get_attribute("src")
    assert src and src.startswith("/api/images/")


def test_a_reload_mid_run_resumes_the_job(server: Server, open_tab: Any, fake: FakeAI) -> None:
    slow_content(fake, 4)
    job_id = create_job(server, data_url(brand_png(RED)))
    tab = open_tab(server)
    tab.open(f"/?job={job_id}")
    sync_api.expect(tab.page.locator("#stages li.current")).to_have_attribute(
        "data-stage", "deepseek_generating")  # fmt: skip
    tab.page.reload()
    sync_api.expect(tab.page.locator("#job-id")).to_have_text(f"#{job_id}")
    sync_api.expect(tab.page.locator("#status")).to_contain_text("Writing content")
    expect_complete(tab)
    assert is_red(swatches(tab)[0])


def test_the_content_is_shown_as_it_is_written(server: Server, open_tab: Any, fake: FakeAI) -> None:
    """Issue 17: while the content stage streams, the pieces parsed so far show live; the
    finished content replaces them."""
    streamed = dataclasses.replace(deepseek_answer(), pieces=8, chunk_delay=0.4)
    fake.deepseek.will(streamed)
    job_id = create_job(server, data_url(brand_png(RED)))
    tab = open_tab(server)
    tab.open(f"/?job={job_id}")
    first = CONTENT["content_pieces"][0]["title"]
    partial = tab.page.locator("#streaming .piece.partial").first
    sync_api.expect(partial).to_be_visible()
    sync_api.expect(partial).to_contain_text(first[:3])
    assert tab.page.locator("#stages li.current").get_attribute("data-stage") == (
        "deepseek_generating"
    )
    assert tab.page.locator("#result").is_hidden()
    expect_complete(tab)
    sync_api.expect(tab.page.locator("#streaming")).to_be_hidden()
    assert tab.page.locator("#result .piece").count() == len(CONTENT["content_pieces"])


def test_a_failure_is_said_in_words_with_its_stage(
    server: Server, open_tab: Any, fake: FakeAI
) -> None:
    fail_content(fake)
    job_id = create_job(server, data_url(brand_png(RED)))
    tab = open_tab(server)
    tab.open(f"/?job={job_id}")
    failure = tab.page.locator("#failure")
    sync_api.expect(failure).to_contain_text("failed while writing the content")
    sync_api.expect(failure).to_contain_text("The prompt is not allowed")
    sync_api.expect(tab.page.locator("#stages li.failed")).to_have_attribute(
        "data-stage", "deepseek_generating")  # fmt: skip
    assert tab.page.locator("#result").is_hidden()


def test_a_cached_answer_has_its_badge_per_stage_and_the_dashboard_counts_it(
    server: Server, open_tab: Any
) -> None:
    image = data_url(brand_png((20, 140, 60)))
    first = create_job(server, image, purpose="cache badge", cache=True)
    finished(server, first)
    second = create_job(server, image, purpose="cache badge", cache=True)
    assert finished(server, second)["status"] == "complete"
    tab = open_tab(server)
    tab.open(f"/?job={first}")
    expect_complete(tab)
    sync_api.expect(tab.page.locator("#usage")).to_contain_text("tokens")
    assert tab.page.locator("#cache-badges .badge").count() == 0  # it asked the providers
    tab.open(f"/?job={second}")
    expect_complete(tab)
    sync_api.expect(tab.page.locator("#vision-cached")).to_have_text("Vision: cached")
    sync_api.expect(tab.page.locator("#content-cached")).to_have_text("Content: cached")
    assert f"job {first}" in str(tab.page.locator("#vision-cached").get_attribute("title"))
    tab.open("/admin")
    sync_api.expect(tab.page.locator("#cache-hits")).to_contain_text("Cache hits today:")
    hits = tab.text("#cache-hits").split(":")[1].split()[0]
    assert int(hits) >= 2


def test_the_history_shows_new_jobs_and_their_status_live(
    server: Server, open_tab: Any, fake: FakeAI
) -> None:
    tab = open_tab(server)
    tab.open("/")
    tab.page.wait_for_selector("#history-list", state="attached")
    slow_content(fake, 2)
    job_id = create_job(server, data_url(brand_png((30, 60, 200))), purpose="a blue one")
    item = tab.page.locator(f'#history-list a[data-job="{job_id}"]')
    sync_api.expect(item).to_contain_text("a blue one")  # arrived over onMyJobs, no reload
    sync_api.expect(item.locator(".badge")).to_have_attribute("data-status", "complete")
    src = item.locator("img").get_attribute("src")
    assert src and src.startswith("/api/images/")
    item.click()  # opens it without a reload
    assert tab.page.url.endswith(f"?job={job_id}")
    expect_complete(tab)


def test_the_form_can_be_filled_and_started_with_the_keyboard_only(
    server: Server, open_tab: Any
) -> None:
    tab = open_tab(server)
    tab.open("/")
    page = tab.page
    page.wait_for_selector("#job-form")
    page.locator("body").focus()

    def tab_to(element_id: str) -> None:
        for _ in range(8):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("drop")  # the drop zone is a button: Enter opens the file chooser
    # Seen as the click on the file input (the native chooser's interception races the key).
    page.evaluate("""document.querySelector('#file').addEventListener('click',
        (e) => { e.preventDefault(); document.body.dataset.chooser = 'opened'; })""")
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("body")).to_have_attribute("data-chooser", "opened")
    tab_to("url")
    page.keyboard.type(data_url(brand_png(RED)))
    tab_to("purpose")
    page.keyboard.type("typed with the keyboard")
    tab_to("format")
    page.keyboard.press("ArrowDown")  # the next option: bullet points
    tab_to("creativity")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert tab.text("#creativity-value") == "1.3"
    tab_to("context")
    page.keyboard.type("a sports brand")
    tab_to("instructions")
    tab_to("start-button")
    page.keyboard.press("Enter")
    expect_complete(tab)
    job_id = int(page.url.rsplit("=", 1)[1])
    with api(server) as client:
        detail = client.get(
            "/visionPipeline.getJobStatus", params={"input": f'{{"jobId":{job_id}}}'}
        )
    assert detail.json()["result"]["data"]["status"] == "complete"


def test_the_page_says_when_it_needs_a_session(signed_server: Server, open_tab: Any) -> None:
    tab = open_tab(signed_server)
    tab.open("/")
    sync_api.expect(tab.page.locator("#signin")).to_contain_text("you are not signed in")
    assert tab.page.locator("#workspace").is_hidden()
    sync_api.expect(tab.page.get_by_label("Session token")).to_be_visible()


def test_a_pasted_token_signs_in(signed_server: Server, open_tab: Any) -> None:
    tab = open_tab(signed_server, tls_proxy=True)
    tab.open("/")
    tab.page.get_by_label("Session token").fill(signed_server.token("page-user", "Page User"))
    tab.page.get_by_role("button", name="Sign in with this token").click()
    sync_api.expect(tab.page.locator("#workspace")).to_be_visible()
    sync_api.expect(tab.page.locator("#who")).to_contain_text("Page User")


def test_a_pasted_token_signs_in_over_plain_http(signed_server: Server, open_tab: Any) -> None:
    # A laptop's http://localhost: the cookie is SameSite=Lax there (a SameSite=None cookie
    # without Secure is dropped by Chromium), so the session sticks.
    tab = open_tab(signed_server)
    tab.open("/")
    tab.page.get_by_label("Session token").fill(signed_server.token("page-user", "Page User"))
    tab.page.get_by_role("button", name="Sign in with this token").click()
    sync_api.expect(tab.page.locator("#workspace")).to_be_visible()
    sync_api.expect(tab.page.locator("#who")).to_contain_text("Page User")


def test_a_bad_token_is_refused_in_words(signed_server: Server, open_tab: Any) -> None:
    tab = open_tab(signed_server, tls_proxy=True)
    tab.open("/")
    tab.page.get_by_label("Session token").fill("not-a-token")
    tab.page.get_by_role("button", name="Sign in with this token").click()
    sync_api.expect(tab.page.locator("#signin-error")).to_contain_text("not accepted")
    tab.problems[:] = [p for p in tab.problems if "401" not in p]  # the refusal itself


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_counts_update(server: Server, open_tab: Any) -> None:
    tab = open_tab(server)
    tab.open("/admin")
    complete = tab.page.locator('#counts li[data-status="complete"] .number')
    sync_api.expect(complete).to_be_visible()
    before = int(complete.inner_text())
    finished(server, create_job(server, data_url(brand_png(RED))))
    sync_api.expect(complete).to_have_text(str(before + 1))  # the next poll shows it
    # Whom the claim takes turns between (issue 17): nobody now, said in words.
    sync_api.expect(tab.page.locator("#waiting-users tbody")).to_have_text("Nothing is waiting.")
    sync_api.expect(tab.page.locator("#in-flight thead")).to_contain_text("Streamed")


def test_a_failed_job_is_retried_from_the_dashboard(
    server: Server, open_tab: Any, fake: FakeAI
) -> None:
    fail_content(fake)
    job_id = create_job(server, data_url(brand_png(RED)))
    assert finished(server, job_id)["status"] == "error"
    tab = open_tab(server)
    tab.open("/admin")
    row = tab.page.locator(f'#failures tr[data-job="{job_id}"]')
    sync_api.expect(row).to_contain_text("The prompt is not allowed")
    row.get_by_role("button", name=f"Retry job {job_id}").click()
    sync_api.expect(tab.page.locator("#action")).to_contain_text(f"Job #{job_id} retried")
    assert finished(server, job_id)["status"] == "complete"  # the fake answers well this time
    sync_api.expect(row).to_have_count(0)


def test_a_non_admin_sees_admins_only(signed_server: Server, open_tab: Any, browser: Any) -> None:
    tab = open_tab(signed_server)
    token = signed_server.token("plain-user", "Plain User")
    tab.page.context.add_cookies(
        [{"name": "app_session_id", "value": token, "url": signed_server.base}]
    )
    tab.open("/admin")
    sync_api.expect(tab.page.locator("#refused")).to_contain_text("Admins only")
    assert tab.page.locator("#board").is_hidden()


# --- spend and budgets (issue 17) --------------------------------------------------------------


def _cli(srv: Server, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "rpc.cli", *args], cwd=ROOT, env=srv.env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_page_shows_the_spend_sends_a_key_and_says_a_reached_budget(
    signed_server: Server, open_tab: Any
) -> None:
    open_id = "budget-page-user"
    _cli(signed_server, "users", "set-role", open_id, "user", "--create")
    _cli(signed_server, "users", "set-budget", open_id, "2")
    tab = open_tab(signed_server)
    token = signed_server.token(open_id, "Budget User")
    tab.page.context.add_cookies(
        [{"name": "app_session_id", "value": token, "url": signed_server.base}]
    )
    tab.open("/")
    spend_line = tab.page.locator("#spend")
    sync_api.expect(spend_line).to_have_text("Spent today $0.00 of $2.00")
    tab.page.fill("#url", "https://images.example.com/brand.png")
    tab.page.fill("#purpose", "posts within a budget")
    tab.page.click("#start-button")
    sync_api.expect(tab.page).to_have_url(re.compile(r"job=\d+"))
    job_id = int(tab.page.url.rsplit("job=", 1)[1])
    ((key,),) = signed_server.sql('SELECT "idempotencyKey" FROM "visionJobs" WHERE id = ?', job_id)
    assert key and len(key) >= 32  # a fresh key per Start click
    spend(signed_server, job_id, 2.5)
    tab.open("/")
    sync_api.expect(spend_line).to_contain_text("Spent today $2.50 of $2.00")
    sync_api.expect(spend_line).to_contain_text("budget reached")
    tab.page.fill("#url", "https://images.example.com/brand.png")
    tab.page.fill("#purpose", "one more")
    tab.page.click("#start-button")
    sync_api.expect(tab.page.locator("#form-error")).to_contain_text(
        "Daily budget of $2.00 reached")  # fmt: skip
    mine = (
        'SELECT COUNT(*) FROM "visionJobs" '
        'WHERE "userId" = (SELECT "userId" FROM "visionJobs" WHERE id = ?)'
    )
    assert signed_server.sql(mine, job_id)[0][0] == 1  # the refused click created nothing
    tab.problems[:] = [p for p in tab.problems if "402" not in p]  # the refusal itself


def test_an_admin_sees_the_spend_without_a_budget(server: Server, open_tab: Any) -> None:
    tab = open_tab(server)
    tab.open("/")
    sync_api.expect(tab.page.locator("#spend")).to_contain_text("(no daily budget: admin)")
    tab.open("/admin")
    sync_api.expect(tab.page.locator("#spend-today")).to_contain_text("Spend today: $")
    sync_api.expect(tab.page.locator("#spend-today")).to_contain_text("No daily budget per user")


# --- screenshots -----------------------------------------------------------------------------


def _result_for_screenshots(server: Server) -> int:
    job_id = 0
    for color in ((40, 90, 200), (250, 180, 30), RED):
        job_id = create_job(server, data_url(brand_png(color)), purpose="launch posts for a brand")
        assert finished(server, job_id)["status"] == "complete"
    return job_id


def test_screenshots_of_the_page_light_and_dark(server: Server, open_tab: Any) -> None:
    job_id = _result_for_screenshots(server)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for dark, name in ((False, "page.png"), (True, "page-dark.png")):
        tab = open_tab(server, dark=dark)
        tab.open(f"/?job={job_id}")
        expect_complete(tab)
        tab.page.wait_for_function("[...document.images].every(i => i.complete)")
        background = tab.page.evaluate("getComputedStyle(document.body).backgroundColor")
        channels = [int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]]
        assert (sum(channels) / 3 < 60) if dark else (sum(channels) / 3 > 200), background
        tab.page.screenshot(path=str(SHOTS / name), full_page=True)


def test_screenshot_of_the_dashboard(server: Server, open_tab: Any, fake: FakeAI) -> None:
    fail_content(fake)  # a failure to show, with its buttons
    assert finished(server, create_job(server, data_url(brand_png(RED))))["status"] == "error"
    tab = open_tab(server)
    tab.open("/admin")
    sync_api.expect(tab.page.locator("#board")).to_be_visible()
    sync_api.expect(tab.page.locator("#chart svg")).to_be_visible()
    tab.page.screenshot(path=str(SHOTS / "admin.png"), full_page=True)
