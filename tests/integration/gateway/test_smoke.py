from __future__ import annotations

import grpc

from jobwire.v1 import job_pb2, queue_service_pb2, queue_service_pb2_grpc, worker_service_pb2_grpc
from jobwire.v1 import worker_service_pb2 as wpb


async def test_enqueue_deliver_ack(channel: grpc.aio.Channel) -> None:
    queue = queue_service_pb2_grpc.QueueServiceStub(channel)
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
    enq = await queue.EnqueueJob(queue_service_pb2.EnqueueJobRequest(type="t", payload=b"{}"))
    stream = workers.StreamJobs()
    await stream.write(
        wpb.StreamJobsRequest(open=wpb.StreamJobsRequest.Open(worker_id="w", max_in_flight=2))
    )
    opened = await stream.read()
    assert isinstance(opened, wpb.StreamJobsResponse)
    assert opened.WhichOneof("kind") == "opened"
    delivery = await stream.read()
    assert isinstance(delivery, wpb.StreamJobsResponse)
    item = delivery.delivery.items[0]
    assert item.job.id == enq.job.id
    ack = wpb.StreamJobsRequest.Ack.Item(lease_id=item.lease_id, result=b"42")
    await stream.write(wpb.StreamJobsRequest(ack=wpb.StreamJobsRequest.Ack(items=[ack])))
    result = await stream.read()
    assert isinstance(result, wpb.StreamJobsResponse)
    assert result.ack_result.items[0].ok
    await stream.done_writing()
    got = await queue.GetJob(queue_service_pb2.GetJobRequest(id=enq.job.id))
    assert got.job.state == job_pb2.Job.STATE_COMPLETED
    assert got.job.result == b"42"
