"""Throughput and memory of the platform: messages through the real RabbitMQ with bgworkers' stack.

Sends N no-op messages, runs an in-process worker until all are processed, and prints the
rate, the per-message latency of the middleware (stub broker, no network) and peak memory.
On RabbitMQ the messages go through a queue of the benchmark's own (``bench-throughput-...``),
deleted at the end: the application's queues are never touched.
Usage: python bench/message_throughput.py [N]   (BGW_BROKER_URL selects the broker)
"""

from __future__ import annotations

import resource
import sys
import time

import dramatiq
from _isolation import own_queue, quiet_logs

from bgworkers import queues
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker, build_stub_broker
from bgworkers.tasks import task


def run(broker: dramatiq.Broker, count: int, threads: int, queue: str) -> tuple[float, float]:
    """Return (seconds to send ``count`` messages, seconds for a worker to process them)."""
    done: list[int] = []

    def bench_noop(i: int) -> None:
        done.append(i)

    actor = task(queue=queues.MAINTENANCE, broker=broker)(bench_noop)
    # The project decorator only knows the application's queues: move the actor to ours.
    actor.queue_name = queue
    broker.declare_queue(queue)
    started = time.perf_counter()
    for i in range(count):
        actor.send(i)
    sent = time.perf_counter() - started
    started = time.perf_counter()
    worker = dramatiq.Worker(broker, queues={queue}, worker_timeout=100, worker_threads=threads)
    worker.start()
    while len(done) < count:
        time.sleep(0.01)
    processed = time.perf_counter() - started
    worker.stop()
    return sent, processed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    quiet_logs()
    settings = get_settings()
    _, stub_elapsed = run(build_stub_broker(settings), count, threads=1, queue="bench-stub")
    rabbit = build_broker(settings)
    with own_queue(rabbit, "throughput") as queue:
        send_elapsed, rabbit_elapsed = run(rabbit, count, threads=8, queue=queue)
    rabbit.close()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"messages: {count}")
    print(
        f"stub broker, 1 thread (middleware cost): {count / stub_elapsed:,.0f} msg/s, "
        f"{stub_elapsed / count * 1e6:,.0f} us/msg"
    )
    print(
        f"RabbitMQ send, one thread, publisher confirms: {count / send_elapsed:,.0f} msg/s "
        f"({send_elapsed:.2f} s)"
    )
    print(
        f"RabbitMQ processing, 1 process x 8 threads: {count / rabbit_elapsed:,.0f} msg/s "
        f"({rabbit_elapsed:.2f} s)"
    )
    print(f"peak RSS: {peak_mib:,.0f} MiB")
    print(f"stub_us_per_message={stub_elapsed / count * 1e6:.0f}")
    print(f"rabbitmq_send_per_s={count / send_elapsed:.0f}")
    print(f"rabbitmq_process_per_s={count / rabbit_elapsed:.0f}")


if __name__ == "__main__":
    main()
