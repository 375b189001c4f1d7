"""Run one relay pass in its own process, for the kill -9 tests (tests/alerts/test_alerts_crash.py).

    python run_relay.py DB_URL WEBHOOK_URL [--stop-after-claim FILE] [--stop-after-pass FILE]

--stop-after-claim: once rows are leased, write their ids to FILE and sleep (to be killed before sending).
--stop-after-pass:  after the pass (rows sent and marked), write FILE and sleep (to be killed after marking).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from crawler.alerts.relay import Relay
from crawler.config import AlertsConfig
from storage.db import open_database


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("url")
    ap.add_argument("--stop-after-claim")
    ap.add_argument("--stop-after-pass")
    args = ap.parse_args()
    cfg = AlertsConfig.model_validate(
        {"lease": "1s", "channels": {"hook": {"type": "webhook", "url": args.url, "timeout": 20}}}
    )

    def on_claim(channel: str, rows: object) -> None:
        if args.stop_after_claim:
            Path(args.stop_after_claim).write_text(" ".join(str(r.id) for r in rows))  # type: ignore[attr-defined]
            time.sleep(3600)

    relay = Relay(open_database(args.db), cfg, on_claim=on_claim)
    report = asyncio.run(relay.run_once())
    print(" ".join(f"{a.delivery_id}:{a.outcome}" for a in report.attempts), flush=True)
    if args.stop_after_pass:
        Path(args.stop_after_pass).write_text("done")
        time.sleep(3600)


if __name__ == "__main__":
    main()
