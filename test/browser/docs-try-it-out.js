#!/usr/bin/env node
// Browser test of GET /docs: Debian's chromium, headless, driven by
// playwright-core (test/node; `npm ci --prefix test/node`).
//
//   node test/browser/docs-try-it-out.js --port PORT [--out FILE] [--chromium PATH]
//
// Opens http://127.0.0.1:PORT/docs, expands POST /workflow/sdxl/txt2img-with-refiner,
// clicks "Try it out", sets the request body to {"input": {"prompt": "a lighthouse"}},
// clicks Execute and waits for the live response: status 200 and a JSON body with
// a PNG in "images". Every request the browser makes must go to 127.0.0.1:PORT
// (data:/blob: URLs aside). Saves a screenshot of the live response to FILE (default
// test/artifacts/docs-try-it-out.png).
//
// Exit status: 0 all checks passed; 1 a check failed (the reason is printed);
// 2 cannot run (no chromium, no playwright-core, bad arguments).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const OPERATION_PATH = '/workflow/sdxl/txt2img-with-refiner';
const BODY = { input: { prompt: 'a lighthouse' } };
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function parseArgs(argv) {
  const out = {
    port: null,
    out: path.join(__dirname, '..', 'artifacts', 'docs-try-it-out.png'),
    chromium: process.env.CHROMIUM || '/usr/bin/chromium',
    timeoutMs: 40000,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--port') { out.port = Number(v); i++; }
    else if (a === '--out') { out.out = v; i++; }
    else if (a === '--chromium') { out.chromium = v; i++; }
    else if (a === '--timeout-ms') { out.timeoutMs = Number(v); i++; }
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port <= 0 || out.port > 65535) {
    throw new Error('--port PORT is required');
  }
  return out;
}

class CheckFailed extends Error {}

function check(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`docs-try-it-out: ${e.message}`);
    return 2;
  }
  if (!fs.existsSync(args.chromium)) {
    console.error(`docs-try-it-out: chromium not found at ${args.chromium}: ` +
                  'install Debian\'s chromium (apt-get install chromium)');
    return 2;
  }
  let chromium;
  try {
    const pw = require(require.resolve('playwright-core',
      { paths: [path.join(__dirname, '..', 'node')] }));
    chromium = pw.chromium;
  } catch (e) {
    console.error('docs-try-it-out: playwright-core is missing: npm ci --prefix test/node ' +
                  `(${e.message})`);
    return 2;
  }

  const origin = `http://127.0.0.1:${args.port}`;
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'docs-chromium-'));
  const requests = [];
  const foreign = [];
  const pageErrors = [];
  const consoleErrors = [];
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: args.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 1100 },
      timeout: 20000,
    });
  } catch (e) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    console.error(`docs-try-it-out: chromium did not start: ${e.message}`);
    return 2;
  }
  try {
    context.setDefaultTimeout(args.timeoutMs);
    context.on('request', (req) => {
      const url = req.url();
      requests.push(`${req.method()} ${url}`);
      if (url.startsWith('data:') || url.startsWith('blob:')) return;
      if (!url.startsWith(origin + '/')) foreign.push(`${req.method()} ${url}`);
    });
    const page = context.pages()[0] || await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e && e.message || e)));
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

    const resp = await page.goto(`${origin}/docs`, { waitUntil: 'load' });
    check(resp && resp.status() === 200, `GET /docs answered ${resp && resp.status()}`);

    // the operation, found by its path (Swagger UI puts it in data-path)
    const op = page.locator('.opblock.opblock-post').filter({
      has: page.locator(`.opblock-summary-path[data-path="${OPERATION_PATH}"]`),
    });
    await op.first().waitFor({ state: 'visible' });
    check(await op.count() === 1, `expected one POST ${OPERATION_PATH} operation, ` +
                                  `found ${await op.count()}`);
    await op.locator('.opblock-summary').first().click();
    await op.locator('button.try-out__btn').click();
    const textarea = op.locator('textarea.body-param__text');
    await textarea.waitFor({ state: 'visible' });
    const example = await textarea.inputValue();
    check(example.includes('"prompt"'), `the request body is not pre-filled with the example: ${example}`);
    await textarea.fill(JSON.stringify(BODY, null, 2));
    await op.locator('button.execute').click();

    // the live response: status and body
    const live = op.locator('.live-responses-table');
    const status = live.locator('tbody .response-col_status').first();
    await status.waitFor({ state: 'visible' });
    const code = (await status.innerText()).trim();
    const bodyEl = live.locator('.response-col_description pre').first();
    await bodyEl.waitFor({ state: 'visible' });
    const text = await bodyEl.innerText();
    check(code === '200', `the response status is ${code}, not 200; body: ${text.slice(0, 500)}`);
    check(text.includes('"images"'), `the response body has no "images": ${text.slice(0, 500)}`);
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new CheckFailed(`the response body shown is not JSON (${e.message}): ${text.slice(0, 300)}`);
    }
    check(Array.isArray(json.images) && json.images.length === 1,
          `expected one image, got ${JSON.stringify(json.images && json.images.length)}`);
    const png = Buffer.from(json.images[0], 'base64');
    check(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
          'images[0] is not a base64 PNG');
    check(png.readUInt32BE(16) === 1024 && png.readUInt32BE(20) === 1024,
          `images[0] is ${png.readUInt32BE(16)}x${png.readUInt32BE(20)}, not 1024x1024`);
    check(json.input && json.input.prompt === BODY.input.prompt,
          `the answer's input.prompt is ${JSON.stringify(json.input && json.input.prompt)}`);
    check(Number.isInteger(json.input.seed), 'the answer\'s input.seed is not an integer');
    const reqUrl = (await op.locator('.request-url pre').first().innerText()).trim();
    check(reqUrl === `${origin}${OPERATION_PATH}`, `Swagger UI called ${reqUrl}`);

    // the screenshot: the live response at the top of the window (request
    // URL, status 200, body), the body scrolled to its "images"
    await op.locator('.responses-wrapper').first()
      .evaluate((el) => el.scrollIntoView({ block: 'start' }));
    const shown = await bodyEl.evaluate((pre) => {
      const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (n.textContent.includes('"images"')) {
          const r = document.createRange();
          r.selectNodeContents(n);
          const scroller = pre.scrollHeight > pre.clientHeight ? pre : pre.parentElement;
          scroller.scrollTop += r.getBoundingClientRect().top -
                               scroller.getBoundingClientRect().top - 40;
          return true;
        }
      }
      return false;
    });
    check(shown, 'could not find "images" in the response body element');
    fs.mkdirSync(path.dirname(args.out), { recursive: true });
    await page.screenshot({ path: args.out });

    check(foreign.length === 0, `requests left ${origin}:\n  ${foreign.join('\n  ')}`);
    check(pageErrors.length === 0, `page errors:\n  ${pageErrors.join('\n  ')}`);
    const csp = consoleErrors.filter((t) => /Content Security Policy/i.test(t));
    check(csp.length === 0, `Content-Security-Policy violations:\n  ${csp.join('\n  ')}`);
    console.log(`ok: ${requests.length} requests, all to ${origin}; status ${code}; ` +
                `seed ${json.input.seed}; screenshot ${args.out}`);
    return 0;
  } catch (e) {
    if (e instanceof CheckFailed || (e && e.name === 'TimeoutError')) {
      console.error(`docs-try-it-out: FAILED: ${e.message}`);
      if (consoleErrors.length) console.error(`console errors:\n  ${consoleErrors.join('\n  ')}`);
      console.error(`requests:\n  ${requests.join('\n  ')}`);
      try {
        const page = context.pages()[0];
        const fail = args.out.replace(/\.png$/, '') + '-failed.png';
        fs.mkdirSync(path.dirname(fail), { recursive: true });
        await page.screenshot({ path: fail, fullPage: true });
        console.error(`screenshot of the failure: ${fail}`);
      } catch (_) { /* best effort */ }
      return 1;
    }
    throw e;
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code), (e) => {
  console.error(`docs-try-it-out: ${e && e.stack || e}`);
  process.exit(1);
});
