"""The web chat, end to end in real headless Chromium (driven by Playwright, which never downloads one here).

The browser is looked up on PATH and at the usual install paths; without one the tests skip with the
reason, except where a browser is required (CI sets CI=true and installs Chromium; LMSTACK_REQUIRE_BROWSER=1
does the same), where a missing browser is a failure. LMSTACK_BROWSER names the executable to use; set
to a path that does not exist, it simulates a machine without a browser.
"""

import os
import shutil
from pathlib import Path

import pytest

from lmstack.engine import Engine, SamplingParams
from lmstack.serve import create_app
from tests.conftest import hold_until_cancelled
from tests.serve_fixtures import running_server, tiny_run

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER_PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/snap/bin/chromium",
                 "/opt/google/chrome/chrome", "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
                 "/Applications/Chromium.app/Contents/MacOS/Chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def find_browser() -> str | None:
    """The Chromium-family executable to drive: LMSTACK_BROWSER if set, else the first found on PATH or
    at a usual install path."""
    if "LMSTACK_BROWSER" in os.environ:
        named = os.environ["LMSTACK_BROWSER"]
        return named if named and os.access(named, os.X_OK) else None
    for name in BROWSER_NAMES:
        if found := shutil.which(name):
            return found
    # one that `playwright install chromium` downloaded
    downloaded = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    paths = [*BROWSER_PATHS, *sorted(map(str, downloaded.glob("chromium-*/chrome-*/chrome")), reverse=True)]
    return next((p for p in paths if os.access(p, os.X_OK) and Path(p).is_file()), None)


def browser_required() -> bool:
    flag = lambda name: os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
    return flag("LMSTACK_REQUIRE_BROWSER") or flag("CI")


def browser_or_skip() -> str:
    """The browser, or a skip (a failure where a browser is required) with a one-line reason."""
    browser = find_browser()
    if browser is None:
        why = ("no Chromium-family browser found (looked for " + ", ".join(BROWSER_NAMES) + " on PATH and at "
               "the usual paths; LMSTACK_BROWSER names one): install one, e.g. apt-get install -y chromium")
        if browser_required():
            pytest.fail(why + " [required here: CI or LMSTACK_REQUIRE_BROWSER is set]", pytrace=False)
        pytest.skip(why)
    return browser


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Playwright's sync API runs one instance per thread)."""
    browser_path = browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page_and_url(browser, tmp_path_factory, tokenizer):
    # a long context, so a greedy reply runs long enough to be stopped by hand
    slow = tiny_run(tmp_path_factory.mktemp("long"), tokenizer, seed=2, max_seq_len=2048)
    small = tiny_run(tmp_path_factory.mktemp("small"), tokenizer, seed=0, max_seq_len=256)
    engines = {"tiny": Engine.load(str(small)), "tiny-long": Engine.load(str(slow))}
    with running_server(create_app(engines)) as url:
        page = browser.new_page()
        page.goto(url + "/")
        yield page, url, engines
        page.close()


def test_chat_streams_keeps_history_and_uses_the_system_prompt(page_and_url):
    page, url, engines = page_and_url
    page.wait_for_function("document.querySelectorAll('#model option').length === 2")
    assert page.locator("#model option").all_inner_texts() == ["tiny (256 ctx)", "tiny-long (2048 ctx)"]
    page.select_option("#model", "tiny")
    page.click("#system-box summary")
    page.fill("#system", "Be brief.")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "8")
    page.fill("#input", "the king speaks")
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming)")
    reply = page.locator(".msg.assistant").first
    from lmstack.io.conversations import encode_chat

    eng = engines["tiny"]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the king speaks"}]
    ids, _ = encode_chat(eng.tokenizer, msgs, add_generation_prompt=True, with_mask=False)
    want = eng.generate([ids], SamplingParams(max_new_tokens=8, temperature=0.0))[0]
    assert reply.evaluate("el => el.firstChild ? el.firstChild.textContent : ''") == want.text
    assert "tokens" in reply.locator(".note").inner_text()
    # a second turn carries the first one as history
    page.fill("#input", "and then?")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.msg.assistant:not(.streaming)').length === 2")
    assert page.locator(".msg.user").all_inner_texts() == ["the king speaks", "and then?"]
    assert page.locator("#history li").count() == 1
    assert page.locator("#history li span").inner_text() == "the king speaks"
    # a new chat starts empty; the old one is still in the history and reopens
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0 and page.locator("#history li").count() == 2
    page.locator("#history li").nth(1).click()
    assert page.locator(".msg.user").count() == 2


def test_stop_button_ends_a_reply_early(page_and_url):
    """The reply is held in the engine after 8 tokens until its request is cancelled, so it cannot end
    by itself before Stop is clicked; Stop must then cancel it in the engine, not only on the page."""
    page, _, engines = page_and_url
    eng = engines["tiny-long"]
    with pytest.MonkeyPatch.context() as mp:
        submitted, reached, cancelled = hold_until_cancelled(mp, eng, after=8)
        page.click("#new-chat")
        page.select_option("#model", "tiny-long")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "1900")
        page.fill("#input", "the queen")
        page.click("#send")
        assert reached.wait(timeout=30)
        page.wait_for_function("(document.querySelector('.msg.assistant') || {}).textContent?.length > 0")
        assert page.locator("#stop").is_visible()
        page.click("#stop")
        page.wait_for_selector(".msg.assistant:not(.streaming)")
        assert cancelled.wait(timeout=30), "Stop did not cancel the request in the engine"
        eng.generate([[1, 2]], SamplingParams(max_new_tokens=1))  # runs after the held step has ended
    assert submitted[0].finish_reason == "stop" and len(submitted[0].token_ids) == 8
    assert page.locator(".msg.assistant").get_attribute("data-finish") == "stopped"
    assert not page.locator("#stop").is_visible() and page.locator("#send").is_enabled()
    assert "stopped" in page.locator(".msg.assistant .note").inner_text()


def test_errors_are_shown_not_swallowed(page_and_url):
    page, *_ = page_and_url
    page.click("#new-chat")
    page.select_option("#model", "tiny")
    page.fill("#max-tokens", "")
    page.fill("#input", "king " * 300)  # longer than the 256-token context
    page.click("#send")
    page.wait_for_selector(".msg.error")
    assert "maximum context length" in page.locator(".msg.error").inner_text()
    assert page.locator("#send").is_enabled()


@pytest.fixture(scope="module")
def tools_page(browser, tokenizer):
    """The web chat against a server with its own tools; requests are forced (by rewriting their
    body in the browser) to call the drawing tool, so an untrained model still makes a call."""
    import json

    import torch

    from lmstack.model import Transformer
    from lmstack.tools import Tool, ToolResult
    from lmstack.tools.calculator import calculator_tool
    from tests.conftest import tiny_config

    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
           b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND"
           b"\xaeB`\x82")
    draw = Tool("draw", "Draw a chart.", {"type": "object", "properties": {"kind": {"enum": ["bar", "line"]}},
                                          "required": ["kind"], "additionalProperties": False},
                fn=lambda kind: ToolResult(f"drew a {kind} chart", images=[png]))
    torch.manual_seed(0)
    engine = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=2048)).eval(), tokenizer)
    sent = []

    def force_draw(route):
        body = json.loads(route.request.post_data)
        sent.append(dict(body))
        if body.get("tool_choice") != "none":
            body["tool_choice"] = {"type": "function", "function": {"name": "draw"}}
        body["max_tokens"] = 60
        body["seed"] = 0  # the page samples at its temperature: the same reply every run
        route.continue_(post_data=json.dumps(body))

    with running_server(create_app({"tiny": engine}, tools=[calculator_tool(), draw])) as url:
        page = browser.new_page()
        page.route("**/v1/chat/completions", force_draw)
        page.goto(url + "/")
        yield page, sent
        page.close()
    engine.close()


def test_tool_calls_and_images_show_in_the_chat(tools_page):
    page, sent = tools_page
    page.wait_for_selector("#tools-switch:not([hidden])")
    assert page.locator("#tool-names").inner_text() == "(calculator, draw)"
    page.fill("#input", "draw me a chart")
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.tool img")
    block = page.locator(".msg.tool").first
    assert block.locator("summary").inner_text().startswith("draw(")
    assert not block.locator("pre").is_visible()  # done: collapsed to its title, the image still shown
    block.locator("summary").click()
    assert "drew a " in block.locator("pre").inner_text()
    page.wait_for_selector("#send:not([disabled])")
    assert "tool_choice" not in sent[-1]  # the switch is on: the server's tools are offered
    n_tool = page.locator(".msg.tool").count()  # the forced draw may run more than one round
    page.click("#tools")  # off: this request asks for no tools
    page.fill("#input", "no tools now")
    page.press("#input", "Enter")
    page.wait_for_function("document.querySelectorAll('.msg.user').length === 2")
    page.wait_for_selector("#send:not([disabled])")
    assert sent[-1]["tool_choice"] == "none"
    assert page.locator(".msg.tool").count() == n_tool  # no tool ran for the second message
