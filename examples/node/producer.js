// A jobwire producer: enqueues jobs, waits for each to finish and prints one
// JSON line per job with its final state and decoded result.
//
//   node producer.js --gateway 127.0.0.1:50051 --type text:upper --queue default \
//     '{"text": "hello"}' '{"text": "world"}'
"use strict";

const { parseArgs } = require("node:util");
const { connect, unary, jsonPayload } = require("./jobwire");

const TERMINAL = new Set(["STATE_COMPLETED", "STATE_DEAD", "STATE_CANCELLED"]);

async function waitFinished(queue, id, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const { job } = await unary(queue, "GetJob", { id });
    if (TERMINAL.has(job.state)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${job.state} after ${seconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function decode(bytes, contentType) {
  if (bytes == null) return null;
  return contentType.startsWith("application/json") ? JSON.parse(bytes.toString()) : bytes.toString("base64");
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      gateway: { type: "string", default: process.env.JOBWIRE_GATEWAY ?? "127.0.0.1:50051" },
      queue: { type: "string", default: "default" },
      type: { type: "string" },
      timeout: { type: "string", default: "30" },
    },
  });
  if (!values.type) throw new Error("--type is required");
  const { queue } = connect(values.gateway);
  const requests = positionals.map((json) => ({
    queue: values.queue,
    type: values.type,
    ...jsonPayload(JSON.parse(json)),
    attributes: { "produced-by": "node" },
  }));
  const { results } = await unary(queue, "EnqueueJobs", { requests });
  for (const { job } of results) {
    const done = await waitFinished(queue, job.id, Number(values.timeout));
    const line = { id: done.id, type: done.type, state: done.state, worker_id: done.worker_id };
    line.result = decode(done.result, done.result_content_type);
    if (done.last_error) line.error = done.last_error.message;
    console.log(JSON.stringify(line));
  }
  queue.close();
}

main().catch((error) => {
  console.error(`producer: ${error.message}`);
  process.exit(1);
});
