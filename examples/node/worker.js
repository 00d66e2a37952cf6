// A jobwire worker speaking the WorkerService.StreamJobs protocol directly:
// `open` first, a fixed number of credits, batched acks and nacks, `drain` on
// SIGINT/SIGTERM (or after --max-jobs), and a clean close once nothing runs.
//
//   node worker.js --gateway 127.0.0.1:50051 --queue default --concurrency 4
//
// Handlers, by job type:
//   math:add   {"a": 1, "b": 2}  -> {"sum": 3}
//   text:shout {"text": "hi"}    -> "HI!" ; {"text": ""} fails without retry
"use strict";

const os = require("node:os");
const { parseArgs } = require("node:util");
const { connect } = require("./jobwire");

class NonRetryable extends Error {}

const HANDLERS = {
  "math:add": async ({ a, b }) => ({ sum: a + b }),
  "text:shout": async ({ text }) => {
    if (!text) throw new NonRetryable("nothing to shout");
    return `${text.toUpperCase()}!`;
  },
};

function main() {
  const { values } = parseArgs({
    options: {
      gateway: { type: "string", default: process.env.JOBWIRE_GATEWAY ?? "127.0.0.1:50051" },
      queue: { type: "string", multiple: true, default: ["default"] },
      concurrency: { type: "string", default: "4" },
      "max-jobs": { type: "string", default: "0" },
      "worker-id": { type: "string", default: `node-${os.hostname()}-${process.pid}` },
    },
  });
  const maxJobs = Number(values["max-jobs"]);
  const { worker } = connect(values.gateway);
  const stream = worker.StreamJobs();
  let running = 0;
  let finished = 0;
  let draining = false;

  const log = (fields) => console.log(JSON.stringify({ worker_id: values["worker-id"], ...fields }));

  // Half-closing our side once draining and idle lets the gateway end the call.
  const closeIfIdle = () => {
    if (draining && running === 0) stream.end();
  };
  const drain = () => {
    if (draining) return;
    draining = true;
    stream.write({ drain: {} });
    closeIfIdle();
  };

  async function run(item) {
    const { job, lease_id: leaseId } = item;
    running += 1;
    try {
      const handler = HANDLERS[job.type];
      if (!handler) throw new NonRetryable(`no handler for ${job.type}`);
      const result = await handler(JSON.parse(job.payload.toString() || "null"), job);
      const bytes = Buffer.from(JSON.stringify(result));
      stream.write({ ack: { items: [{ lease_id: leaseId, result: bytes, result_content_type: "application/json" }] } });
      log({ event: "completed", job_id: job.id, type: job.type, attempt: item.attempt });
    } catch (error) {
      const retryable = !(error instanceof NonRetryable);
      const failure = { message: error.message, type: error.constructor.name, retryable };
      stream.write({ nack: { items: [{ lease_id: leaseId, failure, retryable }] } });
      log({ event: "failed", job_id: job.id, type: job.type, attempt: item.attempt, error: error.message });
    } finally {
      running -= 1;
      finished += 1;
      if (maxJobs && finished >= maxJobs) drain();
      closeIfIdle();
    }
  }

  stream.on("data", (frame) => {
    switch (frame.kind) {
      case "opened":
        log({ event: "opened", session_id: frame.opened.session_id, credits: frame.opened.max_in_flight });
        break;
      case "delivery":
        for (const item of frame.delivery.items) run(item);
        break;
      case "ack_result":
        for (const item of frame.ack_result.items.filter((i) => !i.ok)) {
          log({ event: "ack_rejected", lease_id: item.lease_id, reason: item.reason });
        }
        break;
      case "lease_revoked":
        // Handlers here are short, so a revoked lease just means its ack will be rejected.
        log({ event: "lease_revoked", job_id: frame.lease_revoked.job_id, reason: frame.lease_revoked.reason });
        break;
      case "drain":
        log({ event: "gateway_draining" });
        drain();
        break;
      default:
        break;
    }
  });
  stream.on("error", (error) => {
    console.error(`worker: ${error.message}`);
    process.exitCode = 1;
  });
  stream.on("end", () => {
    log({ event: "closed", finished });
    worker.close();
  });
  process.on("SIGINT", drain);
  process.on("SIGTERM", drain);

  stream.write({
    open: {
      worker_id: values["worker-id"],
      queues: values.queue,
      job_types: Object.keys(HANDLERS),
      max_in_flight: Number(values.concurrency),
      labels: { language: "node", node: process.version },
    },
  });
}

main();
