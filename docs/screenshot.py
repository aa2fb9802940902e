"""Make docs/dashboard.png: a few minutes of a realistic workload, then a headless Chromium
screenshot of the dashboard's overview.

    .venv/bin/python docs/screenshot.py [--minutes 4]

Needs the dev extra (uvicorn, Playwright) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

TASKS = textwrap.dedent(
    '''
    """A shop's background work."""
    import asyncio
    import os
    import random
    import time

    import conveyor

    app = conveyor.Conveyor()
    DOWN = os.environ["GATEWAY_DOWN_FILE"]


    @app.task(queue="emails", retries=3)
    def send_receipt(order_id: int, to: str) -> str:
        time.sleep(random.uniform(0.02, 0.12))
        return f"receipt for order {order_id} sent to {to}"


    @app.task(queue="images", timeout=30)
    async def make_thumbnail(image_id: str, width: int) -> dict[str, int]:
        await asyncio.sleep(random.uniform(0.1, 0.6))
        return {"width": width, "height": width * 3 // 4}


    @app.task(queue="billing", retries=4, backoff=conveyor.Backoff(base=0.5, max=5.0))
    def charge_card(order_id: int, cents: int) -> str:
        time.sleep(random.uniform(0.05, 0.2))
        if os.path.exists(DOWN) and random.random() < 0.7:
            raise ConnectionError(f"payment gateway timed out for order {order_id}")
        if random.random() < 0.03:
            raise ValueError(f"card declined for order {order_id}")
        return f"charged {cents} cents"


    @app.task(queue="reports", retries=1)
    def nightly_report(day: str) -> int:
        time.sleep(random.uniform(0.5, 1.5))
        if random.random() < 0.3:
            raise FileNotFoundError(f"no sales export for {day}")
        return random.randint(100, 900)
    '''
)


def workload(shop: Any, down: Path, minutes: float) -> None:
    """Orders for ``minutes``: a payment gateway outage in the middle, a rush near the end."""
    end = time.monotonic() + minutes * 60
    order = 41_000
    while time.monotonic() < end:
        left = (end - time.monotonic()) / (minutes * 60)
        if 0.45 < left < 0.6:
            down.touch()
        else:
            down.unlink(missing_ok=True)
        rush = 1.0 + 2.0 * max(0.0, 1 - abs(left - 0.3) * 5)
        order += 1
        shop.charge_card.enqueue(order, random.randint(500, 9000))
        shop.send_receipt.enqueue(order, f"customer{order % 977}@example.com")
        if random.random() < 0.6:
            shop.make_thumbnail.enqueue(f"img-{order}", width=random.choice([160, 320, 640]))
        if random.random() < 0.04:
            shop.nightly_report.enqueue(f"2026-11-{order % 28 + 1:02d}")
        time.sleep(random.uniform(0.05, 0.35) / rush)


def shoot(url: str, out: str) -> None:
    """A full-page screenshot of the overview."""
    from playwright.sync_api import sync_playwright

    from tests.web.live import CHROMIUM_ARGS, chromium

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(url)
        page.wait_for_selector("#chart-failures canvas")
        page.wait_for_timeout(1500)
        page.screenshot(path=out, full_page=True)
        browser.close()


def main() -> int:
    """Run the workload, then take the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    args = parser.parse_args()

    import httpx
    import uvicorn

    from tests.servers import free_port

    root = Path(tempfile.mkdtemp(prefix="conveyor-shot-"))
    (root / "shop.py").write_text(TASKS)
    down = root / "gateway-down"
    os.chdir(root)  # the URL is relative: the script and its workers run in `root`
    env = {
        **os.environ,
        "CONVEYOR_URL": "sqlite:///shop.db",
        "GATEWAY_DOWN_FILE": str(down),
        "PYTHONPATH": f"{root}:{ROOT}",
    }
    os.environ.update(env)
    sys.path[:0] = [str(root), str(ROOT)]
    import shop  # type: ignore[import-not-found]

    from conveyor.web import WebSettings, create_app

    command = [sys.executable, "-m", "conveyor", "--log-level", "WARNING", "worker", "shop:app"]
    workers = [
        subprocess.Popen(
            [*command, "--queues", queues, "--concurrency", "8"], env=env, stderr=subprocess.DEVNULL
        )
        for queues in ["emails,billing", "images,billing", "reports,emails"]
    ]
    port = free_port()
    web = create_app(shop.app, WebSettings(sample_every=2.0))
    server = uvicorn.Server(
        uvicorn.Config(web, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        workload(shop, down, args.minutes)
        httpx.post(f"http://127.0.0.1:{port}/api/queues/reports/pause")
        for i in range(6):
            shop.nightly_report.enqueue(f"2026-10-{i + 1:02d}")
        time.sleep(3)  # a sample or two more
        shoot(f"http://127.0.0.1:{port}/", args.out)
        print(f"wrote {args.out}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
        shop.app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
