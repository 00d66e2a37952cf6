"""jobwire's transport ceiling: a raw grpc.aio bidirectional stream, no queue logic.

A server process (this file with ``--serve``) answers one stream method and one
unary method with jobwire's own messages (``StreamJobsRequest`` and
``StreamJobsResponse``, through grpc's generic handlers: no proto of its own);
the benchmark process is the client. With as many jobs as ``core`` (10,000):

- unbatched: per job one ``delivery`` frame with one item, one ``ack`` frame and
  one ``ack_result`` frame (jobwire's three messages per job), 32 jobs
  outstanding (a worker's 32 default credits);
- batched: the same with frames of up to 32 items, as jobwire batches
  deliveries and acks;
- latency: a one-item ``ack`` answered by an ``ack_result`` on an idle stream,
  one at a time; and a bare unary call with the same two messages.

Delivery items are copies of a job like those jobwire delivers (ids, times,
payload), so the sizes are jobwire's; no queue, lease or timer runs. jobwire's
figures in ``core`` next to these tell what its queue logic costs.

Each figure is the median of ``--repeat`` runs, with the spread (min..max).
Run: ``python3 -m hatch run bench:ceiling``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from jobwire.v1 import job_pb2, worker_service_pb2

from measures import report

Request = worker_service_pb2.StreamJobsRequest
Response = worker_service_pb2.StreamJobsResponse
Context = grpc.aio.ServicerContext[Request, Response]

SERVICE = "jobwire.bench.Ceiling"
STREAM = f"/{SERVICE}/Stream"
UNARY = f"/{SERVICE}/Call"
WINDOW = 32  # jobs outstanding, as a worker's default credits at concurrency 8
WARM_UP = 200  # jobs, and round trips, before anything is timed
UNBATCHED = f"raw stream, unbatched: 3 messages per job, {WINDOW} in flight (jobs/s)"
BATCHED = f"raw stream, batched: up to {WINDOW} jobs per frame (jobs/s)"


def _template() -> Response.Delivery.Item:
    """A delivery item as jobwire's gateway fills it for a no-op job."""
    now = time.time()
    item = Response.Delivery.Item(attempt=1)
    job = item.job
    job.id = "0" * 32
    job.queue = "flow"
    job.type = "noop"
    job.payload = b"{}"
    job.content_type = "application/json"
    job.state = job_pb2.Job.STATE_PROCESSING
    job.attempt = 1
    job.max_retries = 3
    job.worker_id = "bench-worker"
    for stamp in (job.create_time, job.update_time, item.lease_expire_time):
        stamp.FromNanoseconds(int(now * 1e9))
    item.lease_id = f"{job.id}.1"
    return item


_TEMPLATE = _template()


def _deliveries(first: int, count: int, batch: int) -> Iterator[Response]:
    """Frames delivering jobs ``first`` to ``first + count - 1``, ``batch`` per frame."""
    for start in range(first, first + count, batch):
        frame = Response()
        items = frame.delivery.items
        for number in range(start, min(start + batch, first + count)):
            item = items.add()
            item.CopyFrom(_TEMPLATE)
            item.job.id = job_id = f"{number:032x}"
            item.lease_id = f"{job_id}.1"
        yield frame


def _ack_result(acks: Iterable[Request.Ack.Item]) -> Response:
    """The ``ack_result`` answering ``acks`` (``Ack.Item`` messages): all applied."""
    frame = Response()
    frame.ack_result.SetInParent()
    add = frame.ack_result.items.add
    for ack in acks:
        add(lease_id=ack.lease_id, ok=True)
    return frame


# Server side (its own process) ------------------------------------------------


async def _stream(requests: AsyncIterator[Request], context: Context) -> None:
    """Deliver ``jobs`` jobs within the worker's credits, or echo (``mode=echo``)."""
    first = await anext(requests)
    labels = first.open.labels
    await context.write(Response(opened=Response.Opened(max_in_flight=first.open.max_in_flight)))
    if labels["mode"] == "echo":
        async for request in requests:
            await context.write(_ack_result(request.ack.items))
        return
    jobs, batch = int(labels["jobs"]), int(labels["batch"])
    sent = min(first.open.max_in_flight, jobs)
    for frame in _deliveries(0, sent, batch):
        await context.write(frame)
    async for request in requests:
        items = request.ack.items
        await context.write(_ack_result(items))
        # Each acked job returns its credit.
        more = min(len(items), jobs - sent)
        for frame in _deliveries(sent, more, batch):
            await context.write(frame)
        sent += more


async def _call(request: Request, context: Context) -> Response:
    return _ack_result(request.ack.items)


async def _serve() -> None:
    server = grpc.aio.server()
    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            _stream,
            request_deserializer=Request.FromString,
            response_serializer=Response.SerializeToString,
        ),
        "Call": grpc.unary_unary_rpc_method_handler(
            _call,
            request_deserializer=Request.FromString,
            response_serializer=Response.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


@contextmanager
def server_process() -> Iterator[str]:
    """Run the server in a process of its own, as the gateway runs; yield its address."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if "listening on" not in line:
                raise RuntimeError(f"server did not start: {line!r}")
            yield line.split()[-1]
        finally:
            process.terminate()
            process.wait(30)


# Client side (the benchmark process) ------------------------------------------


Call = grpc.aio.StreamStreamCall[Request, Response]


async def _open_stream(channel: grpc.aio.Channel, **labels: str) -> Call:
    """Open a stream as a worker opens one; ``labels`` tell the server what to do."""
    stream: grpc.aio.StreamStreamMultiCallable[Request, Response] = channel.stream_stream(
        STREAM,
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )
    call = stream()
    open_ = Request.Open(worker_id="bench-worker", max_in_flight=WINDOW, labels=labels)
    await call.write(Request(open=open_))
    await _read(call)  # opened
    return call


async def _read(call: Call) -> Response:
    response = await call.read()
    if not isinstance(response, Response):
        raise RuntimeError("the server ended the stream early")
    return response


async def _close(call: Call) -> None:
    await call.done_writing()
    code = await call.code()
    if code != grpc.StatusCode.OK:
        raise RuntimeError(f"the stream ended with {code}: {await call.details()}")


async def drain_rate(channel: grpc.aio.Channel, jobs: int, batch: int) -> float:
    """Jobs/s through one stream: delivery, ack, ack_result; ``batch`` items per frame at most."""
    call = await _open_stream(channel, mode="jobs", jobs=str(jobs), batch=str(batch))
    start = time.perf_counter()
    done = 0
    while done < jobs:
        response = await _read(call)
        if response.HasField("delivery"):
            # A no-op job finishes at once: every item of the frame is acked
            # together, in frames of ``batch``, as a worker acks what finished.
            items = response.delivery.items
            for first in range(0, len(items), batch):
                frame = Request()
                frame.ack.SetInParent()
                add = frame.ack.items.add
                for item in items[first : first + batch]:
                    add(lease_id=item.lease_id)
                await call.write(frame)
        else:
            done += len(response.ack_result.items)
    elapsed = time.perf_counter() - start
    await _close(call)
    return jobs / elapsed


def _percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``values`` seconds, in ms."""
    ms = [value * 1000 for value in values]
    return statistics.median(ms), statistics.quantiles(ms, n=100)[98]


def _ping() -> Request:
    frame = Request()
    frame.ack.items.add(lease_id=f"{0:032x}.1")
    return frame


async def stream_latency(channel: grpc.aio.Channel, samples: int) -> tuple[float, float]:
    """One ack → ack_result round trip at a time on an idle stream; p50, p99 in ms."""
    call = await _open_stream(channel, mode="echo")
    ping = _ping()
    values = []
    for n in range(WARM_UP + samples):
        sent = time.perf_counter()
        await call.write(ping)
        await _read(call)
        if n >= WARM_UP:
            values.append(time.perf_counter() - sent)
    await _close(call)
    return _percentiles(values)


async def unary_latency(channel: grpc.aio.Channel, samples: int) -> tuple[float, float]:
    """One unary call at a time with the same two messages; p50, p99 in ms."""
    call = channel.unary_unary(
        UNARY,
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )
    ping = _ping()
    values = []
    for n in range(WARM_UP + samples):
        sent = time.perf_counter()
        await call(ping)
        if n >= WARM_UP:
            values.append(time.perf_counter() - sent)
    return _percentiles(values)


async def one_run(jobs: int, samples: int) -> dict[str, float]:
    """Start a server process, measure the raw stream and unary calls, stop it."""
    figures: dict[str, float] = {}
    with server_process() as address:
        async with grpc.aio.insecure_channel(address) as channel:
            for batch in (1, WINDOW):  # connection and first frames, untimed
                await drain_rate(channel, WARM_UP, batch)
            unbatched = await drain_rate(channel, jobs, 1)
            batched = await drain_rate(channel, jobs, WINDOW)
            figures[UNBATCHED] = unbatched
            figures[BATCHED] = batched
            p50, p99 = await stream_latency(channel, samples)
            figures["stream ping-pong p50 (ms)"] = p50
            figures["stream ping-pong p99 (ms)"] = p99
            p50, p99 = await unary_latency(channel, samples)
            figures["unary round trip p50 (ms)"] = p50
            figures["unary round trip p99 (ms)"] = p99
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    runs = [asyncio.run(one_run(args.jobs, args.samples)) for _ in range(args.repeat)]
    title = f"raw grpc.aio stream, jobwire's messages, {args.jobs:,} jobs, {args.samples} samples"
    print(f"\n{title}, {args.repeat} runs\n")
    print(report(runs))


if __name__ == "__main__":
    main()
