#!/usr/bin/env node
// Parse a Prometheus text-format exposition (GET /metrics) with
// parse-prometheus-text-format (an independent parser from the npm registry,
// output shaped like prom2json) and print the metric families as JSON.
//
//   node parse-metrics.js [FILE]      (no FILE or "-": read stdin)
//
// Prints [{"name", "help", "type", "metrics": [...]}] on stdout and exits 0;
// a counter or gauge sample is {"labels"?, "value"}, a histogram one
// {"labels"?, "buckets": {le: count}, "count", "sum"}. Input the parser
// refuses: the error on stderr, exit 1. Unreadable input: exit 2.
'use strict';

const fs = require('fs');

let text;
try {
  const arg = process.argv[2];
  text = fs.readFileSync(!arg || arg === '-' ? 0 : arg, 'utf8');
} catch (e) {
  console.error(`parse-metrics: cannot read input: ${e.message}`);
  process.exit(2);
}
let parse;
try {
  parse = require('parse-prometheus-text-format');
} catch (e) {
  console.error('parse-metrics: parse-prometheus-text-format is not installed: ' +
                'npm ci --prefix test/node');
  process.exit(2);
}
try {
  const families = parse(text);
  process.stdout.write(JSON.stringify(families) + '\n');
} catch (e) {
  console.error(`parse-metrics: not valid Prometheus text format: ${e.message}`);
  process.exit(1);
}
