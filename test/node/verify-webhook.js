#!/usr/bin/env node
// Verifies one webhook_v2 delivery of comfy-sidecar with the standardwebhooks
// npm package (an implementation independent of the sidecar's).
//
// stdin: JSON {"secret": "...", "headers": {name: value}, "body": "<raw body>"}
//   ("body_base64" instead of "body" passes the raw bytes base64-encoded).
// Exit 0 when new Webhook(secret).verify(body, headers) succeeds; otherwise
// prints the error on stderr and exits 1 (2 for bad input).
"use strict";

let Webhook;
try {
  ({ Webhook } = require("standardwebhooks"));
} catch (e) {
  process.stderr.write("cannot load the standardwebhooks package (run `npm ci --prefix test/node`): " +
                       e.message + "\n");
  process.exit(3);
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (c) => { input += c; });
process.stdin.on("end", () => {
  let req;
  try {
    req = JSON.parse(input);
  } catch (e) {
    process.stderr.write("stdin is not JSON: " + e.message + "\n");
    process.exit(2);
  }
  if (typeof req.secret !== "string" || typeof req.headers !== "object" || req.headers === null) {
    process.stderr.write("stdin must be {secret: string, headers: object, body: string}\n");
    process.exit(2);
  }
  let body;
  if (typeof req.body_base64 === "string") {
    body = Buffer.from(req.body_base64, "base64");
  } else if (typeof req.body === "string") {
    body = req.body;
  } else {
    process.stderr.write("stdin has neither body nor body_base64\n");
    process.exit(2);
  }
  try {
    new Webhook(req.secret).verify(body, req.headers);
  } catch (e) {
    process.stderr.write("verification failed: " + (e && e.name ? e.name + ": " : "") +
                         (e && e.message ? e.message : String(e)) + "\n");
    process.exit(1);
  }
  process.stdout.write("ok\n");
  process.exit(0);
});
