// Loads the jobwire.v1 contract straight from the repository's proto/ tree,
// so these examples share no code with the Python packages.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.resolve(__dirname, "../../proto");

const definition = protoLoader.loadSync(
  ["jobwire/v1/queue_service.proto", "jobwire/v1/worker_service.proto"],
  {
    includeDirs: [PROTO_ROOT],
    // Field names as in the .proto (worker_id, not workerId); int64 counts as
    // strings rather than lossy numbers; enums by name; unset fields get their
    // defaults; `kind` names the oneof member that is set.
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  },
);
const v1 = grpc.loadPackageDefinition(definition).jobwire.v1;

/** Client stubs for a gateway at `address` (host:port, plaintext). */
function connect(address) {
  const credentials = grpc.credentials.createInsecure();
  return {
    queue: new v1.QueueService(address, credentials),
    worker: new v1.WorkerService(address, credentials),
  };
}

/** Calls a unary method as a promise, with a deadline in seconds. */
function unary(client, method, request, seconds = 10) {
  const deadline = new Date(Date.now() + seconds * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, reply) => (error ? reject(error) : resolve(reply)));
  });
}

/** Encodes a value as a JSON payload, the Python SDKs' default serializer. */
function jsonPayload(value) {
  return { payload: Buffer.from(JSON.stringify(value)), content_type: "application/json" };
}

module.exports = { connect, unary, jsonPayload };
