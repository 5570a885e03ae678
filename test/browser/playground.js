#!/usr/bin/env node
// Browser test of the playground page (GET /), driven by playwright-core in
// Debian's chromium, headless.
//
// Usage: node test/browser/playground.js BASE_URL [--emulator URL] [--artifacts DIR]
//   BASE_URL   the sidecar, e.g. http://127.0.0.1:3111 (its ComfyUI should be the
//              emulator with --step-time 0.05 so that a job takes a couple of seconds)
//   --emulator the emulator's URL: also checks that a runtime error shows ComfyUI's message
//   --artifacts where the screenshots go (default test/artifacts)
// Env: CHROMIUM (default /usr/bin/chromium).
// Prints one "ok"/"FAIL" line per check; exits 1 on the first failure.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); if (i < 0) return dflt; const v = args[i + 1]; args.splice(i, 2); return v; };
const EMU = opt('--emulator', null);
const ART = path.resolve(opt('--artifacts', path.join(__dirname, '..', 'artifacts')));
const BASE = (args[0] || '').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TPL = 'sdxl/txt2img-with-refiner';

function die(msg) { console.error('FAIL: ' + msg); process.exit(1); }
if (!/^http:\/\/(127\.0\.0\.1|localhost):\d+$/.test(BASE)) die('usage: playground.js http://127.0.0.1:PORT [--emulator URL] [--artifacts DIR]');
if (!fs.existsSync(CHROMIUM)) die(CHROMIUM + ' does not exist: install Debian\'s chromium (apt-get install -y chromium)');
let chromium;
try {
  chromium = require(require.resolve('playwright-core', {paths: [path.join(__dirname, '..', 'node'), __dirname]})).chromium;
} catch (e) {
  die('playwright-core is not installed: run npm ci in test/node (' + e.message + ')');
}

function check(cond, what, detail) {
  if (!cond) throw new Error(what + (detail !== undefined ? ': ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)) : ''));
  console.log('ok   ' + what);
}

// Submit the form; returns the page's job counter for finished().
async function submit(page, form) {
  const before = await page.$eval('#job', j => +j.dataset.run || 0);
  await page.click(form + ' button[type=submit]');
  return before + 1;
}
// Wait until job number `run` has ended (state ok or bad, submit button back).
async function finished(page, run, timeout) {
  await page.waitForFunction(n => {
    const j = document.querySelector('#job');
    return +j.dataset.run >= n && (j.dataset.state === 'ok' || j.dataset.state === 'bad') &&
      [...document.querySelectorAll('#forms .go')].every(b => !b.disabled);
  }, run, {timeout});
}

async function main() {
  fs.mkdirSync(ART, {recursive: true});
  for (const f of fs.readdirSync(ART)) if (/^playground-.*\.png$/.test(f)) fs.rmSync(path.join(ART, f));   // no stale shots
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-chromium-'));
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM, headless: true, viewport: {width: 1360, height: 1000},
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const shot = async (page, name) => { await page.screenshot({path: path.join(ART, 'playground-' + name + '.png'), fullPage: true}); };
  let page;
  try {
    page = ctx.pages()[0] || await ctx.newPage();
    const foreign = [], errors = [];
    page.on('request', r => {
      const u = r.url();
      if (!(u.startsWith(BASE + '/') || u === BASE || u.startsWith('data:') || u.startsWith('blob:'))) foreign.push(u);
    });
    page.on('pageerror', e => errors.push(String(e)));
    page.on('console', m => { if (m.type() === 'error' && !/favicon|Failed to load resource/.test(m.text())) errors.push('console: ' + m.text()); });

    // ---- the page itself
    const resp = await page.goto(BASE + '/', {waitUntil: 'load'});
    check(resp.status() === 200, 'GET / answers 200', resp.status());
    check(/^text\/html/.test(resp.headers()['content-type'] || ''), 'GET / is text/html', resp.headers()['content-type']);
    const body = await resp.body();
    check(body.length < 50 * 1024, 'the page weighs under 50 KB (' + body.length + ' bytes)');
    await page.waitForSelector('body[data-loaded=true]', {timeout: 15000});
    await page.waitForSelector('#ready[data-state=ready]', {timeout: 15000});
    const pills = await page.textContent('#ready');
    check(/ComfyUI\s*up/.test(pills) && /warm\s*yes/.test(pills) && /version\s*\d/.test(pills) && /queue\s*\d/.test(pills),
      'readiness shows ComfyUI up, warm, queue depth and version', pills);
    const tabs = await page.$$eval('#tabs button', b => b.map(x => x.dataset.template));
    check(tabs.includes(TPL) && tabs.length >= 2, 'one form per template', tabs);

    // ---- the refiner form, generated from the schema
    await page.click('#tabs button[data-template="' + TPL + '"]');
    const F = 'form[data-template="' + TPL + '"]';
    await page.waitForSelector(F, {state: 'visible'});
    const shape = await page.$eval(F, f => ({
      prompt: f.elements.prompt.tagName, steps: [f.elements.steps.type, f.elements.steps.min, f.elements.steps.max, f.elements.steps.value],
      sampler: f.elements.sampler_name.tagName, samplers: f.elements.sampler_name.options.length,
      scheduler: f.elements.scheduler.tagName, ckpt: f.elements.checkpoint.tagName,
      seed: f.elements.seed.value, dice: !!f.querySelector('.field[data-name=seed] button.dice')}));
    check(shape.prompt === 'TEXTAREA', 'prompt is a text area', shape);
    check(shape.steps.join() === 'number,1,100,25', 'steps is a number input with its bounds and default', shape.steps);
    check(shape.sampler === 'SELECT' && shape.samplers > 5 && shape.scheduler === 'SELECT' && shape.ckpt === 'SELECT',
      'samplers, schedulers and checkpoints are selects', shape);
    check(shape.seed === '' && shape.dice, 'the seed is empty (random) with a dice button', shape);
    await page.click(F + ' .field[data-name=seed] button.dice');
    const rolled = await page.inputValue(F + ' [name=seed]');
    check(/^\d+$/.test(rolled), 'the dice fills an integer seed', rolled);
    await page.fill(F + ' [name=seed]', '');

    await page.fill(F + ' [name=prompt]', 'a lighthouse on a cliff at dusk, playground test');
    await page.fill(F + ' [name=width]', '768');
    await page.fill(F + ' [name=height]', '512');
    await page.fill(F + ' [name=steps]', '40');
    await page.fill(F + ' [name=base_end_step]', '30');
    await page.fill(F + ' [name=refiner_start_step]', '30');
    await shot(page, 'form');

    // ---- submit and watch the progress: a MutationObserver in the page records
    // every change of the bars (<progress> reflects value/max to attributes)
    await page.evaluate(() => {
      window.__samples = [];
      const snap = () => window.__samples.push({
        overall: document.querySelector('#overall') ? document.querySelector('#overall').value : null,
        stages: [...document.querySelectorAll('#bars progress.stage')].map(p => [p.dataset.node, p.value, p.max]),
        preview: getComputedStyle(document.querySelector('#preview')).display !== 'none'});
      new MutationObserver(snap).observe(document.querySelector('#job'), {subtree: true, childList: true, attributes: true});
    });
    const run = await submit(page, F);
    await page.waitForFunction(() => { const p = document.querySelector('#bars progress.stage'); return p && p.value > 0 && p.value < p.max; }, null, {timeout: 30000, polling: 'raf'});
    await shot(page, 'progress');
    await finished(page, run, 60000);
    const samples = await page.evaluate(() => window.__samples);
    const state = await page.$eval('#job', j => j.dataset.state);
    check(state === 'ok', 'the job completed', await page.textContent('#job'));
    const last = samples[samples.length - 1];
    const overall = samples.map(s => s.overall).filter(v => v != null);
    const distinct = [...new Set(overall)];
    check(distinct.length >= 3 && overall.every((v, i) => i === 0 || v >= overall[i - 1]),
      'the overall progress bar moved forward (' + distinct.length + ' distinct values)', distinct);
    const base = samples.map(s => s.stages[0]).filter(Boolean).map(x => x[1]);
    check([...new Set(base)].length >= 3, 'the base stage bar moved while the job ran', [...new Set(base)]);
    check(last.stages.map(x => x[0]).join() === '10,11' && last.stages.every(x => x[1] === x[2] && x[2] > 0),
      'one full bar per sampler stage, base (10) then refiner (11)', last.stages);
    check(samples.some(s => s.preview), 'live previews were shown while it ran');

    // ---- the image
    await page.waitForFunction(() => { const i = document.querySelector('#results img.out'); return i && i.complete && i.naturalWidth > 0; }, null, {timeout: 15000});
    const img = await page.$eval('#results figure', f => ({w: f.querySelector('img').naturalWidth, h: f.querySelector('img').naturalHeight,
      cap: f.querySelector('.size').textContent, dl: f.querySelector('a[download]') && f.querySelector('a[download]').getAttribute('download'),
      href: f.querySelector('a[download]') && f.querySelector('a[download]').href}));
    check(img.w === 768 && img.h === 512, 'the image has its real size 768 × 512', img);
    check(img.cap === '768 × 512', 'the size is shown', img.cap);
    check(/\.png$/.test(img.dl || '') && /^blob:/.test(img.href || ''), 'the image is downloadable', img);
    const seed = (await page.textContent('#results .params .seed')).trim();
    check(/^\d+$/.test(seed) && Number.isSafeInteger(Number(seed)), 'the seed used is shown as an integer', seed);
    const params = await page.textContent('#results .params');
    check(/steps\s*40/.test(params) && /width\s*768/.test(params), 'the parameters used are shown');
    const timing = await page.textContent('#results .timing');
    check(/total\s*[\d.]+\s*m?s/.test(timing), 'the timing from stats is shown', timing);
    await page.waitForFunction(s => [...document.querySelectorAll('#gallery .item .seed')].some(e => e.textContent === s), seed, {timeout: 5000});
    check(true, 'the gallery has the new entry');
    await shot(page, 'result');

    // ---- the gallery survives a reload
    await page.reload({waitUntil: 'load'});
    await page.waitForSelector('body[data-loaded=true]');
    const g = await page.$$eval('#gallery .item', items => items.map(i => ({seed: i.querySelector('.seed').textContent, cap: i.textContent, thumb: i.querySelector('img').naturalWidth})));
    check(g.length >= 1 && g[0].seed === seed && /768 × 512/.test(g[0].cap), 'the gallery entry survives a reload', g);
    await page.waitForFunction(() => { const i = document.querySelector('#gallery .item img'); return i && i.complete && i.naturalWidth > 0; });
    check(await page.isVisible(F), 'the refiner form is still selected after the reload');
    // clicking the entry loads its parameters back into the form
    await page.fill(F + ' [name=seed]', '');
    await page.click('#gallery .item');
    check(await page.inputValue(F + ' [name=seed]') === seed && await page.inputValue(F + ' [name=width]') === '768',
      'clicking a gallery entry loads its parameters');

    // ---- a 400 highlights the field named by location
    await page.$eval(F + ' [name=steps]', e => e.removeAttribute('max'));
    await page.fill(F + ' [name=steps]', '101');
    await finished(page, await submit(page, F), 10000);
    await page.waitForSelector(F + ' .field[data-name=steps].invalid', {timeout: 10000});
    const e1 = await page.$eval(F, f => ({msg: f.querySelector('.field[data-name=steps] .err').textContent,
      inv: [...f.querySelectorAll('.field.invalid')].map(x => x.dataset.name), aria: f.elements.steps.getAttribute('aria-invalid')}));
    check(e1.inv.join() === 'steps' && /100/.test(e1.msg) && e1.aria === 'true', 'steps above its maximum: the steps field is highlighted with the message', e1);
    await shot(page, 'invalid-steps');

    await page.fill(F + ' [name=steps]', '10');   // base_end_step 30 > steps 10: a rule
    await finished(page, await submit(page, F), 10000);
    await page.waitForSelector(F + ' .field[data-name=base_end_step].invalid', {timeout: 10000});
    const e2 = await page.$eval(F, f => ({msg: f.querySelector('.field[data-name=base_end_step] .err').textContent,
      inv: [...f.querySelectorAll('.field.invalid')].map(x => x.dataset.name)}));
    check(e2.inv.join() === 'base_end_step' && /base_end_step <= steps/.test(e2.msg), 'a broken rule highlights base_end_step', e2);
    await shot(page, 'invalid-rule');
    await page.fill(F + ' [name=base_end_step]', '8');
    check(await page.$$eval(F + ' .field.invalid', x => x.length) === 0, 'editing the field clears its highlight');

    // ---- a runtime error shows ComfyUI's message
    if (EMU) {
      const r = await fetch(EMU + '/__emulator/fault', {method: 'POST', body: JSON.stringify({mode: 'runtime_error', message: 'playground test: out of tea'})});
      check(r.ok, 'armed a runtime_error in the emulator');
      await page.fill(F + ' [name=refiner_start_step]', '8');
      await finished(page, await submit(page, F), 30000);
      check(await page.$eval('#job', j => j.dataset.state) === 'bad', 'the job failed');
      const msg = await page.textContent('#jobmsg');
      check(/out of tea/.test(msg) && /500/.test(msg), 'a runtime error shows ComfyUI\'s message', msg);
      await shot(page, 'runtime-error');
    }

    // ---- 429: the sidecar does not send it yet (MAX_QUEUE_DEPTH comes later), so the
    // answer is made up in the browser with page.route (nothing leaves the machine)
    const W = '**/workflow/' + TPL + '*';
    await page.route(W, r => r.fulfill({status: 429, headers: {'Retry-After': '2', 'Content-Type': 'application/json'},
      body: JSON.stringify({error: 'the queue is full (3 jobs)', location: 'queue'})}));
    const run429 = await submit(page, F);
    await page.waitForFunction(n => { const j = document.querySelector('#job'); return +j.dataset.run >= n && j.dataset.state === 'bad'; }, run429, {timeout: 10000});
    await page.waitForFunction(f => /Retry in \d s/.test(document.querySelector(f + ' .go').textContent), F, {timeout: 5000});
    const q = {status: await page.textContent('#status .t'), form: await page.textContent(F + ' .formerr'),
      btn: await page.$eval(F + ' .go', b => [b.disabled, b.textContent])};
    check(/queue is full/i.test(q.status) && /retry in 2 s/.test(q.status) && /3 jobs/.test(q.form) && q.btn[0],
      '429: says the queue is full and when to retry, and holds the button', q);
    await shot(page, 'queue-full');
    await page.waitForFunction(f => { const b = document.querySelector(f + ' .go'); return !b.disabled && b.textContent === 'Generate'; }, F, {timeout: 5000});
    check(true, 'the button comes back after Retry-After');
    await page.unroute(W);

    check(foreign.length === 0, 'no request left ' + BASE, foreign);
    check(errors.length === 0, 'no JavaScript errors', errors);
  } catch (e) {
    if (page) await shot(page, 'failure').catch(() => {});
    throw e;
  } finally {
    await ctx.close();
    fs.rmSync(userData, {recursive: true, force: true});
  }
}

main().then(() => { console.log('playground: all checks passed'); }, e => { console.error('FAIL: ' + (e && e.stack || e)); process.exit(1); });
