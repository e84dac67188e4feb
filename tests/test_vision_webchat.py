"""Images in the web chat, in real headless Chromium (tests/test_webchat.py's browser): the Image button
and paste attach images, thumbnails show in the message and the history, and the image reaches the
model as an image_url data URL: the reply is the model's answer about that image."""

import base64
import json

import pytest

from lmstack.engine import Engine
from lmstack.serve import create_app
from lmstack.serve.app import ModelEntry
from lmstack.vision.ask import ask
from lmstack.vision.serving import open_vision
from tests.serve_fixtures import running_server, tiny_run
from tests.test_webchat import browser  # noqa: F401 - the module's one Chromium
from tests.vision_fixtures import png_bytes, tiny_vlm_run

Q = "What shape is this?"


@pytest.fixture(scope="module")
def vision_page(browser, tmp_path_factory, tokenizer):  # noqa: F811
    run, data = tiny_vlm_run(tmp_path_factory.mktemp("vlm"))
    vision = open_vision(run, max_batch=4)
    text = Engine.load(str(tiny_run(tmp_path_factory.mktemp("text"), tokenizer)), max_batch=2)
    sent = []
    with running_server(create_app([ModelEntry("vlm", vision.engine, vision=vision), ModelEntry("text", text)])) as url:
        page = browser.new_page()
        page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions")
                else None)
        page.goto(url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length === 2")
        yield page, vision, data, sent, tmp_path_factory.mktemp("images")
        page.close()
    vision.close()
    text.close()


def image_parts(body: dict) -> list[str]:
    return [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]


def test_upload_and_paste_send_images(vision_page):
    page, vision, data, sent, tmp = vision_page
    page.select_option("#model", "text")
    assert page.locator("#attach").is_hidden()  # a text-only model gets no Image button
    page.select_option("#model", "vlm")
    assert page.locator("#attach").is_visible()
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "6")
    first, second = data.val[0].image, data.val[1].image
    path = tmp / "first.png"
    path.write_bytes(png_bytes(first))
    page.set_input_files("#image-file", str(path))
    page.wait_for_selector("#attachments img.thumb")
    page.fill("#input", Q)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming)")
    assert page.locator("#attachments img").count() == 0  # sent with the message
    want = ask(vision.vlm, vision.tokenizer, [first], [Q], 6, reference=True)[0]
    reply = page.locator(".msg.assistant").first.evaluate("el => el.firstChild ? el.firstChild.textContent : ''")
    assert reply.strip() == want
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    assert image_parts(sent[-1]) == [url]
    assert sent[-1]["messages"][-1]["content"][-1] == {"type": "text", "text": Q}
    assert page.locator(".msg.user img.thumb").get_attribute("src") == url
    # paste an image into the message box: the second turn carries both images, the first in the history
    pasted = base64.b64encode(png_bytes(second)).decode()
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "pasted.png", { type: "image/png" }));
        document.getElementById("input").dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt }));
    }""", pasted)
    page.wait_for_selector("#attachments img.thumb")
    page.fill("#input", "And this one?")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.msg.assistant:not(.streaming)').length === 2")
    assert image_parts(sent[-1]) == [url, "data:image/png;base64," + pasted]
    assert page.locator(".msg.error").count() == 0
    # the thumbnails come back with the conversation from the history after a reload
    page.reload()
    page.wait_for_selector(".msg.user img.thumb")
    assert page.locator(".msg.user img.thumb").count() == 2


def test_a_bad_image_is_shown_as_an_error(vision_page):
    page, _, _, _, tmp = vision_page
    page.click("#new-chat")
    page.select_option("#model", "vlm")
    bad = tmp / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = tmp / "first.png"  # written by the test before
    page.set_input_files("#image-file", [str(good), str(bad)])
    page.wait_for_function("document.querySelectorAll('#attachments img.thumb').length === 2")
    page.locator("#attachments button").first.click()  # the x removes the first image before sending
    assert page.locator("#attachments img.thumb").count() == 1
    page.fill("#input", Q)
    page.click("#send")
    page.wait_for_selector(".msg.error")
    assert "not an image" in page.locator(".msg.error").inner_text()
    assert page.locator("#send").is_enabled()
