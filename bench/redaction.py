"""Benchmark: time to redact 10 KB, 100 KB and 1 MB of hostile text; it must grow linearly.

Two figures per size:

* ``patterns``: :func:`bgworkers.logs.redaction.redact_text` with no length cap, so every pattern
  reads the whole text. The texts are the shapes that made the old patterns quadratic (long
  runs of one word, ``a://`` repeated, ``k=v`` pairs, quotes, ``password=`` repeated) mixed
  one after the other; linear patterns give ~10x the time for 10x the text.
* ``logged``: the whole logging path (structlog processors and JSON rendering) of one line
  whose field is that text, as dramatiq's "Failed to process message" line would carry it.
  Fields are capped at 2 KB before redaction, so this stays flat.

Touches no broker, database or file. Prints the figures; asserts nothing about speed.

    python bench/redaction.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import time

from bgworkers.logs.loggers import configure_logging, get_logger
from bgworkers.logs.redaction import redact_text

SIZES = {"10kb": 10_000, "100kb": 100_000, "1mb": 1_000_000}
SHAPES = ("a", "a://", "k=v ", "'x': ", "password=", "Bearer ", "a-", "?key=1&")


def hostile_text(size: int) -> str:
    """``size`` characters: one long run of each shape in turn (long runs are what made the
    old patterns rescan the text from every position)."""
    share = size // len(SHAPES) + 1
    return "".join((shape * (share // len(shape) + 1))[:share] for shape in SHAPES)[:size]


def best_time(run: object, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stream = io.StringIO()
    configure_logging(log_format="json", level="INFO", stream=stream)
    log = get_logger("bench.redaction")

    results: dict[str, tuple[float, float, int]] = {}
    for name, size in SIZES.items():
        text = hostile_text(size)
        patterns_s = best_time(lambda text=text: redact_text(text, limit=len(text)), args.repeat)

        def log_once(text: str = text) -> None:
            stream.seek(0)
            stream.truncate()
            log.info("message_failed", arguments=text)

        logged_s = best_time(log_once, args.repeat)
        line_bytes = len(stream.getvalue().encode())
        json.loads(stream.getvalue())  # one valid JSON line
        results[name] = (patterns_s, logged_s, line_bytes)
        print(
            f"{name:>6}: patterns {patterns_s * 1000:8.2f} ms, "
            f"logged line {logged_s * 1000:6.3f} ms ({line_bytes:,} bytes)"
        )

    growth = results["1mb"][0] / results["10kb"][0]
    print(f"patterns growth 10 KB -> 1 MB: x{growth:.0f} for x100 the text (linear: ~x100)")
    for name in SIZES:
        print(f"redact_{name}_ms={results[name][0] * 1000:.2f}")
    for name in SIZES:
        print(f"log_line_{name}_ms={results[name][1] * 1000:.3f}")


if __name__ == "__main__":
    main()
