"""Screenshot of the web chat for the docs: serve a model, ask it questions in headless Chromium, save a PNG.

    python scripts/webchat_screenshot.py [--model runs/speedrun/assistant] [--out docs/webchat.png]

Runs `lmstack serve` on a free port of 127.0.0.1 and drives Debian's /usr/bin/chromium with Playwright.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

import httpx2 as httpx
from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
QUESTIONS = ["Who are you?", "What is 12 + 7?", "And if you add 3 to that?"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", help="as for lmstack serve (repeatable)")
    ap.add_argument("--out", default="docs/webchat.png")
    ap.add_argument("--system", default="You are lmstack's assistant.")
    a = ap.parse_args()
    models = a.model or ["assistant=runs/speedrun/assistant", "base=runs/speedrun"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "lmstack", "serve", "--host", "127.0.0.1", "--port", str(port)]
    for m in models:
        cmd += ["--model", m]
    server = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            page.goto(url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length > 0")
            page.click("#system-box summary")
            page.fill("#system", a.system)
            page.fill("#temperature", "0")
            for i, q in enumerate(QUESTIONS, 1):
                page.fill("#input", q)
                page.click("#send")
                page.wait_for_function(f"document.querySelectorAll('.msg.assistant:not(.streaming)').length === {i}",
                                       timeout=120_000)
            page.screenshot(path=a.out)
            browser.close()
        print(f"wrote {a.out}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
