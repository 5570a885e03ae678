#!/usr/bin/env node
// Validate an OpenAPI document with @seriousme/openapi-schema-validator (an
// independent validator from the npm registry; 2.0, 3.0, 3.1 and 3.2).
//
//   node validate-openapi.js [FILE]      (no FILE or "-": read stdin)
//
// Valid: prints "valid OpenAPI <version>" and exits 0. Invalid (schema errors,
// or a $ref that does not resolve): prints the errors as JSON on stderr and
// exits 1. Unreadable input or not JSON/YAML: exits 2.
'use strict';

const fs = require('fs');

function readInput(arg) {
  if (!arg || arg === '-') return fs.readFileSync(0, 'utf8');
  return fs.readFileSync(arg, 'utf8');
}

async function main() {
  const { Validator } = await import('@seriousme/openapi-schema-validator');
  let text;
  try {
    text = readInput(process.argv[2]);
  } catch (e) {
    console.error(`validate-openapi: cannot read input: ${e.message}`);
    return 2;
  }
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    console.error(`validate-openapi: input is not JSON: ${e.message}`);
    return 2;
  }
  const validator = new Validator();
  const res = await validator.validate(doc);
  if (!res.valid) {
    console.error(`validate-openapi: INVALID OpenAPI document (version ${validator.version || 'unknown'}):`);
    console.error(JSON.stringify(res.errors, null, 2));
    return 1;
  }
  // Every $ref must resolve inside the document (the validator does not
  // follow references by itself).
  try {
    validator.resolveRefs();
  } catch (e) {
    console.error(`validate-openapi: INVALID: a $ref does not resolve: ${e.message}`);
    return 1;
  }
  console.log(`valid OpenAPI ${validator.version}`);
  return 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(`validate-openapi: ${e && e.stack || e}`);
  process.exit(2);
});
