// Drives Debian's chromium for ClusterScope's :browser tests
// (ClusterScope.Test.Browser). One browser per process; requests arrive as
// one JSON object per line on stdin, answers leave as one JSON object per
// line on stdout, each carrying the request's `ref`.
//
// Requests:
//   {ref, cmd: "open", viewport: {width, height}}        -> {ref, ok, page}
//   {ref, cmd: "run", page, steps: [step...]}            -> {ref, ok, results, console_errors}
//   {ref, cmd: "close", page}                            -> {ref, ok}
//   {ref, cmd: "quit"}
// A failing step answers {ref, ok: false, step, error, console_errors, screenshot}.
//
// Steps (each `{op, ...}`; `timeout` in ms where it waits):
//   goto {url}                      load a page, wait for `load`
//   click {selector}                click (waits for it to be visible)
//   fill {selector, value}          type into an input
//   press {key, selector?}          a key press (on the page or an element)
//   wait {selector, state?}         wait for an element (visible|attached|hidden|detached)
//   wait_fn {js, arg?}              wait until a JS function of `arg` returns truthy
//   eval {js, arg?}                 the JSON value of a JS function of `arg`
//   text {selector}                 an element's textContent
//   count {selector}                how many elements match
//   attr {selector, name}           an attribute of the first match
//   screenshot {name}               a PNG under the screenshot directory (once graphs are still)
//   settled {}                      wait until every animated graph is still
//   download {selector}             click, wait for the download, return {filename, text}
//   console {}                      the console errors so far (and clears them)
//   sleep {ms}
//
// Never downloads a browser: executablePath is the system chromium.

'use strict';

const path = require('path');
const fs = require('fs');
const readline = require('readline');

const root = path.resolve(__dirname, '..', '..', '..');
const { chromium } = require(path.join(root, 'node_modules', 'playwright-core'));

const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const screenshotDir =
  process.env.SCREENSHOT_DIR || path.join(root, '_build', 'browser-screenshots');

let browser = null;
const pages = new Map();
let nextPage = 1;

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function launch() {
  if (browser) return browser;
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  return browser;
}

async function open(req) {
  const b = await launch();
  const viewport = req.viewport || { width: 1280, height: 800 };
  const context = await b.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const entry = { context, page, errors: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      const loc = msg.location() || {};
      entry.errors.push({ text: msg.text(), url: loc.url || '' });
    }
  });
  page.on('pageerror', (err) => entry.errors.push({ text: String(err && err.stack || err), url: '' }));
  const id = nextPage++;
  pages.set(id, entry);
  return { page: id };
}

function fn(js) {
  // `js` is the source of a function expression: "(arg) => ...".
  // eslint-disable-next-line no-new-func
  return new Function(`return (${js});`)();
}

async function step(entry, s) {
  const page = entry.page;
  const timeout = s.timeout || 10000;
  switch (s.op) {
    case 'goto':
      await page.goto(s.url, { waitUntil: 'load', timeout });
      return null;
    case 'click':
      await page.click(s.selector, { timeout });
      return null;
    case 'fill':
      await page.fill(s.selector, s.value, { timeout });
      return null;
    case 'press':
      if (s.selector) await page.press(s.selector, s.key, { timeout });
      else await page.keyboard.press(s.key);
      return null;
    case 'wait':
      await page.waitForSelector(s.selector, { state: s.state || 'visible', timeout });
      return null;
    case 'wait_fn': {
      const handle = await page.waitForFunction(fn(s.js), s.arg === undefined ? null : s.arg, {
        timeout,
        polling: s.polling || 'raf',
      });
      return await handle.jsonValue();
    }
    case 'eval':
      return await page.evaluate(fn(s.js), s.arg === undefined ? null : s.arg);
    case 'text':
      return await page.textContent(s.selector, { timeout });
    case 'count':
      return await page.locator(s.selector).count();
    case 'attr':
      return await page.getAttribute(s.selector, s.name, { timeout });
    case 'screenshot': {
      // Graphs animate their changes: shoot once they are still.
      await page
        .waitForFunction(
          () => [...document.querySelectorAll('svg[data-settled]')].every((el) => el.dataset.settled === 'true'),
          null,
          { timeout: 3000 },
        )
        .catch(() => {});
      fs.mkdirSync(screenshotDir, { recursive: true });
      const file = path.join(screenshotDir, `${s.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.png`);
      await page.screenshot({ path: file, fullPage: !!s.full_page });
      return file;
    }
    case 'download': {
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout }),
        page.click(s.selector, { timeout }),
      ]);
      const file = await download.path();
      return { filename: download.suggestedFilename(), text: fs.readFileSync(file, 'utf8') };
    }
    case 'settled':
      await page.waitForFunction(
        () => [...document.querySelectorAll('svg[data-settled]')].every((el) => el.dataset.settled === 'true'),
        null,
        { timeout },
      );
      return null;
    case 'console': {
      const errors = entry.errors;
      entry.errors = [];
      return errors;
    }
    case 'sleep':
      await new Promise((r) => setTimeout(r, s.ms || 100));
      return null;
    default:
      throw new Error(`unknown step op ${JSON.stringify(s.op)}`);
  }
}

async function run(req) {
  const entry = pages.get(req.page);
  if (!entry) throw new Error(`no page ${req.page}`);
  const results = [];
  for (let i = 0; i < req.steps.length; i++) {
    try {
      results.push(await step(entry, req.steps[i]));
    } catch (err) {
      let shot = null;
      try {
        fs.mkdirSync(screenshotDir, { recursive: true });
        shot = path.join(screenshotDir, `failure-${Date.now()}.png`);
        await entry.page.screenshot({ path: shot });
      } catch (_) {
        shot = null;
      }
      return {
        ok: false,
        step: i,
        op: req.steps[i].op,
        error: String(err && err.message || err),
        results,
        screenshot: shot,
        console_errors: entry.errors,
      };
    }
  }
  return { ok: true, results, console_errors: entry.errors };
}

async function handle(req) {
  switch (req.cmd) {
    case 'open':
      return { ok: true, ...(await open(req)) };
    case 'run':
      return await run(req);
    case 'close': {
      const entry = pages.get(req.page);
      pages.delete(req.page);
      if (entry) await entry.context.close();
      return { ok: true };
    }
    case 'quit':
      if (browser) await browser.close();
      reply({ ref: req.ref, ok: true });
      process.exit(0);
      return null;
    default:
      throw new Error(`unknown cmd ${JSON.stringify(req.cmd)}`);
  }
}

// Requests are served one at a time, in order.
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
    } catch (err) {
      reply({ ref: null, ok: false, error: `bad request: ${err.message}` });
      return;
    }
    try {
      reply({ ref: req.ref, ...(await handle(req)) });
    } catch (err) {
      reply({ ref: req.ref, ok: false, error: String(err && err.message || err) });
    }
  });
});
// The test run ended (stdin closed): the browser goes with it.
rl.on('close', async () => {
  try {
    if (browser) await browser.close();
  } finally {
    process.exit(0);
  }
});
