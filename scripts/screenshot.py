"""The README's screenshot of the page at GET / (docs/page.png), made by Debian's chromium.

Starts the service on the committed models on a free loopback port, opens the page in headless Chromium
(Playwright, ``executable_path=/usr/bin/chromium``), loads a sample review, scores it with every model,
waits for the highlighted words and saves a full-page screenshot, reduced to a 256-colour palette
(Pillow) to keep the PNG small. Run from the repository root with the dev virtualenv::

    .venv/bin/python scripts/screenshot.py            # docs/page.png
    .venv/bin/python scripts/screenshot.py --sample 3 --width 390 --out /tmp/phone.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from tests.conftest import running_server  # noqa: E402  (the tests' server: one way to start the service)

CHROMIUM = "/usr/bin/chromium"
DEFAULT_SAMPLE = 5  # a short review on which the models disagree (service/static/samples.json, from 0)


def shrink(path: Path) -> None:
    """A 256-colour palette: the page is flat colours and text, so this keeps it sharp at a fraction of the size."""
    try:
        from PIL import Image
    except ImportError:
        print("Pillow is not installed: the screenshot is left as Chromium saved it", file=sys.stderr)
        return
    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    reduced.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "page.png")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, help="which sample review, from 0")
    parser.add_argument("--width", type=int, default=1200, help="viewport width in CSS pixels")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    args = parser.parse_args()

    with running_server(model_dir=str(args.model_dir), access_log="false") as (base_url, _), \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            errors = []
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base_url}/")
            expect(page.locator("#sentiment-page")).to_have_attribute("data-state", "ready")
            page.locator("button.sample").nth(args.sample).click()
            page.locator("#score").click()
            expect(page.locator("#sentiment-page")).to_have_attribute("data-state", "scored")
            expect(page.locator("#words .word").first).to_be_attached()
            page.wait_for_load_state("networkidle")
            # The hover tip of one word, as a reader would see it: the strongest push in the review.
            page.locator("#words .word").evaluate_all(
                "spans => spans.reduce((a, b) => Math.abs(+b.dataset.contribution) > Math.abs(+a.dataset.contribution)"
                " ? b : a).dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))")
            page.mouse.move(0, 0)
            if errors:
                raise SystemExit(f"the page logged errors: {errors}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
        finally:
            browser.close()
    shrink(args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
