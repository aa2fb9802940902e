"""The tasks of the README and the demo: `conveyor worker examples.tasks:app`."""

from __future__ import annotations

import asyncio
import random
import time

import conveyor

app = conveyor.Conveyor()  # SQLite in ./conveyor.db, or $CONVEYOR_URL


@app.task
def send_welcome_email(to: str) -> str:
    """A sync task: it runs in the worker's thread pool."""
    time.sleep(0.05)  # stands in for an SMTP round trip
    return f"sent to {to}"


@app.task(queue="default", priority=5, timeout=10)
async def resize(image_id: str, width: int) -> dict[str, int | str]:
    """An async task: it runs on the worker's event loop."""
    await asyncio.sleep(0.02)
    return {"image": image_id, "width": width, "height": width * 3 // 4}


# Ten retries at 40% failure: every order gets through but about once in 5,000 demos.
@app.task(retries=10, backoff=conveyor.Backoff(base=0.05, max=0.5))
def charge_card(order_id: int) -> str:
    """A flaky third-party call: it fails now and then, and retries with backoff."""
    if random.random() < 0.4:
        raise ConnectionError(f"payment gateway timed out for order {order_id}")
    return f"order {order_id} charged"


@app.task(retries=2, backoff=conveyor.Backoff(base=0.1))
def import_report(path: str) -> int:
    """A task that always fails: it ends in the dead-letter queue (`conveyor failed list`)."""
    raise FileNotFoundError(f"no report at {path}")
