// Browser tests of Tally's pages: Debian's chromium, driven by playwright-core,
// against a tallyd on a private embedded PostgreSQL. One run: a presenter,
// a big screen and 20 participants; votes, live bars, a reload that keeps
// its vote, a participant offline while the poll closes, screenshots.
//
// usage: node tests/e2e/e2e.mjs PATH/TO/tallyd
// exit 77 (skipped) when /usr/bin/chromium or the node modules are missing.
// TALLY_E2E_DOCS_IMG=1 also refreshes the user guide's pictures in docs/img/;
// TALLY_E2E_KEEP_LOG=FILE keeps a copy of the server's log there.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { pageFiles, pageWeight, PARTICIPANT_BUDGET } from './weights.mjs';
import { pgStop, startTallyd } from '../tallyd.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const OUT = path.join(ROOT, 'build', 'e2e');
const DOCS_IMG = path.join(ROOT, 'docs', 'img');
const CHROMIUM = '/usr/bin/chromium';
const BIN = process.argv[2];
const N_PARTS = 20;
const OPTIONS = ['Roadmap', 'Hiring', 'Budget', 'Q&A'];
const choiceOf = (i) => (i < 8 ? 0 : i < 14 ? 1 : i < 18 ? 2 : 3); // counts 8, 6, 4, 2
const PHONE = { width: 360, height: 740 };
const DESKTOP = { width: 1280, height: 800 };
const WAIT_MS = 20000;
const DOCS_SHOTS = ['start-phone', 'join-phone', 'join-closed-phone', 'present-desktop', 'screen-desktop'];

if (!BIN || !fs.existsSync(BIN)) { console.log('usage: node e2e.mjs PATH/TO/tallyd'); process.exit(2); }
if (!fs.existsSync(CHROMIUM) || !fs.existsSync(path.join(HERE, 'node_modules', 'playwright-core'))) {
  console.log(`skipped: needs ${CHROMIUM} and tests/e2e/node_modules (tools/deps.sh installs both)`);
  process.exit(77);
}
const { chromium } = await import('playwright-core');

let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) passed++; else { failed++; console.log('FAIL:', what); }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-e2e-'));
fs.chmodSync(tmp, 0o755);
const dataDir = path.join(tmp, 'data');
fs.mkdirSync(dataDir, { mode: 0o755 });
process.env.TMPDIR = tmp; // the browser's fresh profile lands here too, and goes with it
const logPath = path.join(tmp, 'tallyd.log');
const srv = await startTallyd(BIN, dataDir, logPath);
const { port, base } = srv;

async function api(method, p, token) {
  const h = token ? { authorization: `Bearer ${token}` } : {};
  const r = await fetch(base + p, { method, headers: h });
  return { status: r.status, json: await r.json().catch(() => null) };
}

// ---- PNG check: decode and count distinct colours ----------------------

/** Distinct RGB colours in an 8-bit RGB/RGBA PNG (what Chromium writes). */
function pngColours(file) {
  const buf = fs.readFileSync(file);
  let pos = 8, w = 0, h = 0, type = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos); const kind = buf.toString('ascii', pos + 4, pos + 8);
    const body = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === 'IHDR') { w = body.readUInt32BE(0); h = body.readUInt32BE(4); type = body[9]; if (body[8] !== 8) return 0; }
    if (kind === 'IDAT') idat.push(body);
    pos += 12 + len;
  }
  const bpp = type === 6 ? 4 : type === 2 ? 3 : 0;
  if (!bpp) return 0;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = w * bpp;
  let prev = Buffer.alloc(stride);
  const colours = new Set();
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)];
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? line[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
      let p = 0;
      if (f === 1) p = a; else if (f === 2) p = b; else if (f === 3) p = (a + b) >> 1;
      else if (f === 4) { const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c); p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      line[x] = (line[x] + p) & 255;
    }
    for (let x = 0; x < stride; x += bpp) colours.add((line[x] << 16) | (line[x + 1] << 8) | line[x + 2]);
    prev = line;
  }
  return colours.size;
}

const shots = [];
async function shot(page, name, size) {
  if (size) await page.setViewportSize(size);
  await sleep(600); // transitions settle
  const file = path.join(OUT, `${name}.png`);
  await page.screenshot({ path: file });
  shots.push(file);
  const n = pngColours(file);
  check(n >= 64, `${name}.png is not blank (${n} distinct colours)`);
  return file;
}

// ---- page weight: what tallyd sends for the participant page ---------------

function fetchEncoded(p, encoding) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, headers: { 'accept-encoding': encoding } }, (res) => {
      let n = 0;
      res.on('data', (c) => { n += c.length; });
      res.on('end', () => resolve({ status: res.statusCode, encoding: res.headers['content-encoding'] || 'identity', bytes: n }));
    });
    req.on('error', reject);
  });
}

async function checkWeights(code) {
  const www = path.join(ROOT, 'net', 'www');
  const w = pageWeight(www, 'join.html');
  check(w.total.gzip <= PARTICIPANT_BUDGET && w.total.br <= PARTICIPANT_BUDGET,
    `participant page within ${PARTICIPANT_BUDGET} bytes compressed (gzip ${w.total.gzip}, br ${w.total.br})`);
  for (const enc of ['br', 'gzip']) {
    let total = 0;
    for (const f of pageFiles(www, 'join.html')) {
      const r = await fetchEncoded(f === 'join.html' ? `/j/${code}` : `/assets/${f}`, enc);
      check(r.status === 200, `GET ${f}: 200 (got ${r.status})`);
      if (f.endsWith('.js')) check(r.encoding === enc, `${f} served with ${enc} (got ${r.encoding})`);
      total += r.bytes;
    }
    check(total <= PARTICIPANT_BUDGET, `participant page as served with ${enc}: ${total} bytes`);
    console.log(`participant page as served (${enc}): ${total} bytes`);
  }
}

// ---- page helpers ----------------------------------------------------------

const pageProblems = [];
function watch(page, name) {
  page.on('pageerror', (e) => pageProblems.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|ERR_INTERNET_DISCONNECTED|WebSocket connection/.test(m.text())) {
      pageProblems.push(`${name}: ${m.text()}`);
    }
  });
  page.wsUrls = [];
  page.wsLog = []; // (not page.frames, which is Playwright's) the last stream messages this page received, for a failure's report
  page.on('websocket', (ws) => {
    page.wsUrls.push(ws.url());
    ws.on('framereceived', (f) => {
      const text = String(f.payload);
      page.wsLog.push(`${Date.now() % 100000} ${text.length > 160 ? text.slice(0, 160) + '...' : text}`);
      if (page.wsLog.length > 12) page.wsLog.shift();
    });
    ws.on('close', () => page.wsLog.push(`${Date.now() % 100000} (socket closed)`));
  });
}

/** What a failed wait on live results needs to be understood: what the page
 * last received and what the server says of its streams. */
async function explain(page, name) {
  try {
    const vis = await page.evaluate(() => `${document.visibilityState}, focus ${document.hasFocus()}`);
    console.log(`  ${name}: page ${vis}; bars ${JSON.stringify(await page.$$eval('.bars .num', (ns) => ns.map((n) => n.textContent)))}`);
  } catch (e) { console.log(`  ${name}: page state unknown (${e.message})`); }
  console.log(`  ${name}: last frames received (ms clock, newest last):`);
  for (const f of page.wsLog) console.log(`    ${f}`);
  try {
    const text = await (await fetch(base + '/metrics')).text();
    const keep = /^tally_(stream|results_hold|subscribers|net_recv_starved)/;
    for (const l of text.split('\n')) if (keep.test(l)) console.log(`    ${l}`);
  } catch (e) { console.log(`    /metrics: ${e.message}`); }
}

async function waitFor(fn, what, ms = WAIT_MS, onFail = null) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < ms) {
    try { last = await fn(); if (last === true) return true; } catch (e) { last = e.message; }
    await sleep(100);
  }
  check(false, `timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
  if (onFail) await onFail();
  return false;
}

/** The counts shown by a set of result bars ("8 · 40%" per row). */
async function barCounts(page, scope) {
  return page.$$eval(`${scope} .bars .num`, (ns) => ns.map((n) => parseInt(n.textContent, 10)));
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// ---- the scenario ----------------------------------------------------------

async function createSession(browser) {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await ctx.newPage();
  watch(page, 'presenter');
  const home = await page.goto(base + '/');
  check(home.status() === 200, `GET / is 200 (got ${home.status()})`);
  check(/default-src 'self'/.test(home.headers()['content-security-policy'] || ''), 'pages carry the Content-Security-Policy');
  await page.fill('#title', 'All-hands Q4');
  await page.click('#create button');
  await page.waitForURL(/\/present\/[A-Z0-9]{6}$/);
  const code = page.url().split('/').pop();
  await waitFor(async () => (await page.getAttribute('#conn', 'data-state')) === 'open', 'presenter connected');
  const qr = await page.$eval('#qr', (i) => i.complete && i.naturalWidth > 0);
  check(qr, 'the join QR code is shown');
  return { ctx, page, code };
}

async function openScreen(browser, presenter) {
  const href = await presenter.getAttribute('#screen-link', 'href');
  check(/^\/screen\/[A-Z0-9]{6}#token=/.test(href), `big-screen link carries the token in its fragment (${href.slice(0, 20)})`);
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await ctx.newPage();
  watch(page, 'screen');
  await page.goto(base + href);
  await waitFor(async () => (await page.getAttribute('#conn', 'data-state')) === 'open', 'screen connected');
  check(!page.url().includes('token'), 'the token is removed from the screen\'s address bar');
  return { ctx, page };
}

async function joinAll(browser, code) {
  const parts = [];
  for (let i = 0; i < N_PARTS; i++) {
    const ctx = await browser.newContext({ viewport: PHONE, hasTouch: true });
    const page = await ctx.newPage();
    watch(page, `p${i}`);
    parts.push({ ctx, page, i });
  }
  // The first joins through the start page with the code in lower case.
  await parts[0].page.goto(base + '/');
  await parts[0].page.fill('#code', 'k7qx2o');
  await parts[0].page.click('#join button');
  check(/never contain 0, 1, I, L or O/.test(await parts[0].page.textContent('#code-error')), 'a mistyped code is explained on the start page');
  await parts[0].page.fill('#code', code.toLowerCase());
  await shot(parts[0].page, 'start-phone');
  await parts[0].page.click('#join button');
  await parts[0].page.waitForURL(new RegExp(`/j/${code}$`));
  await Promise.all(parts.slice(1).map((p) => p.page.goto(`${base}/j/${p.i % 2 ? code.toLowerCase() : code}`)));
  for (const p of parts) {
    await waitFor(async () => (await p.page.getAttribute('#conn', 'data-state')) === 'open', `participant ${p.i} connected`);
    p.id = await p.page.evaluate((c) => JSON.parse(localStorage.getItem(`tally.p.${c}`)).id, code);
  }
  check(new Set(parts.map((p) => p.id)).size === N_PARTS, 'every participant page has its own identity');
  check(await parts[0].page.isVisible('#waiting'), 'participants wait for the first poll');
  return parts;
}

async function createPoll(presenter) {
  await presenter.fill('#question', 'Which topic should we cover first?');
  await presenter.click('#add-option');
  await presenter.click('#add-option');
  const inputs = await presenter.$$('#options input');
  for (let k = 0; k < OPTIONS.length; k++) await inputs[k].fill(OPTIONS[k]);
  await presenter.click('#create-open');
  await waitFor(async () => (await presenter.$('.poll[data-state="open"]')) !== null, 'the poll is open on the console');
  return Number(await presenter.getAttribute('.poll[data-state="open"]', 'data-poll'));
}

/**
 * Holds one participant's answers to its vote back (the WebSocket ack, and
 * the HTTP vote the page falls back to), to see that "counted" waits for them.
 */
async function holdAcks(page) {
  const held = [];
  let holding = true, acks = 0;
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    const srv = ws.connectToServer();
    ws.onMessage((m) => srv.send(m));
    srv.onMessage((m) => {
      if (!String(m).includes('"type":"ack"')) { ws.send(m); return; }
      acks++;
      if (holding) held.push(() => ws.send(m)); else ws.send(m);
    });
  });
  const go = (route) => route.continue().catch(() => { /* the page gave up on it meanwhile */ });
  await page.route(/\/votes$/, (route) => { if (holding) held.push(() => go(route)); else go(route); });
  return { held, acks: () => acks, release() { holding = false; held.splice(0).forEach((f) => f()); } };
}

async function vote(p, pollId) {
  const card = `section[data-poll="${pollId}"]`;
  await p.page.waitForSelector(`${card}[data-mode="ask"]`, { timeout: WAIT_MS });
  await p.page.click(`${card} label.choice:nth-child(${choiceOf(p.i) + 1})`);
  await p.page.click(`${card} button.vote-btn`);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  for (let i = 0; i < 300 && srv.exit === null; i++) {
    try { if ((await fetch(base + '/healthz')).ok) break; } catch { /* starting */ }
    await sleep(100);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const watcher = await scenario(browser);
    // A clean stop; an open page then says it is retrying.
    srv.proc.kill('SIGTERM');
    for (let i = 0; i < 150 && srv.exit === null; i++) await sleep(100);
    check(srv.exit === 0, `tallyd exits 0 after SIGTERM (got ${srv.exit})`);
    await waitFor(async () => (await watcher.getAttribute('#conn', 'data-state')) === 'reconnecting', 'a page shows it is reconnecting');
    await waitFor(async () => /retrying in \d+ s/.test(await watcher.textContent('#conn')), 'a page says the server is unreachable, retrying');
  } finally {
    await browser.close();
  }
  // Nothing from the sanitizers when tallyd is built with them.
  const log = fs.readFileSync(logPath, 'utf8');
  check(!/runtime error|Sanitizer/.test(log), 'no sanitizer reports in the server log');
  // An error logged is a broken invariant (a subscription counted twice, an
  // event dropped), even when the pages did not show it.
  const errors = log.split('\n').filter((l) => / ERROR /.test(l));
  check(errors.length === 0, `no errors in the server log (${errors.slice(0, 3).join(' | ')})`);
}

async function scenario(browser) {
  // Errors a person can act on: an unknown code.
  const lost = await (await browser.newContext({ viewport: PHONE })).newPage();
  watch(lost, 'unknown');
  await lost.goto(base + '/j/ZZZZZZ');
  await waitFor(async () => /No session has the code ZZZZZZ/.test(await lost.textContent('#notice')), 'unknown code explained');
  await lost.context().close();

  const pres = await createSession(browser);
  const { code } = pres;
  const screen = await openScreen(browser, pres.page);
  await checkWeights(code);
  const parts = await joinAll(browser, code);
  await waitFor(async () => (await pres.page.getAttribute('#people', 'data-online')) === String(N_PARTS), 'presenter sees 20 online');

  const pollId = await createPoll(pres.page);
  const slow = parts[3];
  const gate = await holdAcks(slow.page);
  await slow.page.reload(); // the route applies to the next socket
  await waitFor(async () => (await slow.page.getAttribute('#conn', 'data-state')) === 'open', 'held participant reconnected');
  // The held participant: sent and committed, but not "counted" before its ack arrives.
  await vote(slow, pollId);
  await waitFor(async () => gate.acks() === 1, 'the held ack reached the browser');
  await sleep(300);
  const mode = await slow.page.getAttribute(`section[data-poll="${pollId}"]`, 'data-mode');
  check(mode === 'pending', `no "counted" before the server's ack (mode ${mode})`);
  gate.release();
  await Promise.all(parts.filter((p) => p !== slow).map((p) => vote(p, pollId)));
  for (const p of parts) {
    await waitFor(async () => (await p.page.getAttribute(`section[data-poll="${pollId}"]`, 'data-mode')) === 'counted', `participant ${p.i} counted`);
  }
  const expect = [0, 0, 0, 0];
  for (const p of parts) expect[choiceOf(p.i)]++;

  // The presenter's bars, the screen and a participant's live results agree.
  const pollCard = `.poll[data-poll="${pollId}"]`;
  await waitFor(async () => same(await barCounts(pres.page, pollCard), expect), `presenter bars show ${expect}`,
    WAIT_MS, () => explain(pres.page, 'presenter'));
  await waitFor(async () => same(await barCounts(screen.page, '#show'), expect), `screen bars show ${expect}`,
    WAIT_MS, () => explain(screen.page, 'screen'));
  await waitFor(async () => same(await barCounts(parts[0].page, `section[data-poll="${pollId}"]`), expect), 'participant live results',
    WAIT_MS, () => explain(parts[0].page, 'participant 0'));
  check(/20 voters/.test(await pres.page.textContent(`${pollCard} .meta`)), 'presenter shows 20 voters');
  const pct = await pres.page.textContent(`${pollCard} .bars .row:first-child .num`);
  check(pct.trim() === '8 · 40%', `count and percentage on the console (${pct})`);
  const ariaNow = await screen.page.getAttribute('#show .bars .row:first-child .bar', 'aria-valuenow');
  check(ariaNow === '40', `bars expose their value to assistive technology (${ariaNow})`);

  // A reload keeps the identity and the vote.
  const re = parts[5];
  await re.page.reload();
  await waitFor(async () => (await re.page.getAttribute(`section[data-poll="${pollId}"]`, 'data-mode')) === 'counted', 'reloaded page shows its vote counted');
  const idAfter = await re.page.evaluate((c) => JSON.parse(localStorage.getItem(`tally.p.${c}`)).id, code);
  check(idAfter === re.id, `same participant after reload (${re.id} → ${idAfter})`);
  const mine = await re.page.$$eval(`section[data-poll="${pollId}"] .bars .row`, (rows) => rows.map((r) => r.classList.contains('mine')));
  check(mine[choiceOf(re.i)] === true && mine.filter(Boolean).length === 1, 'reloaded page marks its own choice');
  const sess = await api('GET', `/api/v1/sessions/${code}`, await pres.page.evaluate((c) => JSON.parse(localStorage.getItem(`tally.pt.${c}`)), code));
  check(sess.json && sess.json.participants === N_PARTS, `still ${N_PARTS} participants joined after the reload (${sess.json?.participants})`);
  await waitFor(async () => same(await barCounts(pres.page, pollCard), expect), 'counts unchanged after the reload');

  await screenshots(pres, screen, parts, pollId, 'open');

  // Offline while the poll closes; back online, the final result.
  const off = parts[N_PARTS - 1];
  const socketsBefore = off.page.wsUrls.length;
  await off.ctx.setOffline(true);
  await waitFor(async () => (await off.page.getAttribute('#conn', 'data-state')) === 'offline', 'offline page shows it');
  await pres.page.click(`${pollCard} button`);
  await waitFor(async () => (await pres.page.$(`.poll[data-poll="${pollId}"][data-state="closed"]`)) !== null, 'the poll closed');
  await waitFor(async () => /Final results/.test(await parts[0].page.textContent(`section[data-poll="${pollId}"]`)), 'online participant sees final results');
  await sleep(500);
  check(/Live results/.test(await off.page.textContent(`section[data-poll="${pollId}"]`)), 'the offline page did not hear of the close');
  await off.ctx.setOffline(false);
  await waitFor(async () => /Final results/.test(await off.page.textContent(`section[data-poll="${pollId}"]`)), 'back online: final results');
  check(same(await barCounts(off.page, `section[data-poll="${pollId}"]`), expect), 'back online: the final counts');
  const resumed = off.page.wsUrls.slice(socketsBefore);
  check(resumed.length >= 1 && resumed.every((u) => /[?&]since=\d+/.test(u)), `reconnected with since (${resumed.map((u) => u.replace(/token=[^&]+/, 'token=…'))})`);
  check((await off.page.getAttribute('#conn', 'data-state')) === 'open', 'back online: connected');
  await waitFor(async () => /Final results/.test(await screen.page.textContent('#kicker')), 'screen shows final results');
  check(same(await barCounts(screen.page, '#show'), expect), 'screen: final counts');

  await eventSourceReplay(parts[1].page, code, pollId, expect);

  // CSV export from the console.
  const [dl] = await Promise.all([pres.page.waitForEvent('download'), pres.page.click('#export')]);
  const csv = fs.readFileSync(await dl.path(), 'utf8');
  const rows = csv.trim().split('\n').slice(1).map((l) => l.split(','));
  check(same(rows.map((r) => Number(r.at(-1))), expect), `CSV export has the counts (${csv.replace(/\n/g, ' | ')})`);

  await screenshots(pres, screen, parts, pollId, 'closed');
  await multiRound(pres, screen, parts.slice(0, 3), parts[4]);

  // Closing the session reaches the participants as an explained state.
  await pres.page.click('#close-session');
  await pres.page.click('#cc-yes');
  await waitFor(async () => /session has ended/.test(await parts[1].page.textContent('#notice')), 'participants see the session ended');
  await waitFor(async () => /session is closed/.test(await pres.page.textContent('#notice')), 'presenter sees the session closed');
  const late = await (await browser.newContext({ viewport: PHONE })).newPage();
  watch(late, 'late');
  await late.goto(`${base}/j/${code}`);
  await waitFor(async () => /session has ended/.test(await late.textContent('#notice')), 'a late joiner is told the session ended');

  check(pageProblems.length === 0, `no script errors or CSP violations (${pageProblems.slice(0, 3)})`);
  return parts[2].page;
}

/**
 * Chromium's own EventSource on the SSE stream, from the start (since=0):
 * hello first, then every sequenced event once, gap-free, ending with this
 * poll's close carrying the final counts.
 */
async function eventSourceReplay(page, code, pollId, expect) {
  const got = await page.evaluate(([c, id]) => new Promise((resolve) => {
    const tok = JSON.parse(localStorage.getItem(`tally.p.${c}`)).token;
    const es = new EventSource(`/api/v1/sessions/${c}/events?since=0&token=${encodeURIComponent(tok)}`);
    const seen = [];
    const done = () => { es.close(); resolve(seen); };
    const on = (type) => es.addEventListener(type, (e) => {
      const m = JSON.parse(e.data);
      seen.push({ type, id: e.lastEventId, seq: m.seq, poll: m.data && m.data.id, counts: m.data && m.data.counts });
      if (type === 'poll.closed' && m.data.id === id) done();
    });
    ['hello', 'poll.created', 'poll.opened', 'poll.closed', 'results', 'presence'].forEach(on);
    setTimeout(done, 10000);
  }), [code, pollId]);
  check(got.length > 0 && got[0].type === 'hello', `EventSource: hello first (${got.map((e) => e.type)})`);
  const seqd = got.filter((e) => e.seq !== undefined);
  check(seqd.every((e, i) => e.seq === i + 1 && e.id === String(e.seq)),
    `EventSource: seq 1..${seqd.length} gap-free with matching ids (${seqd.map((e) => e.seq)})`);
  const opened = seqd.findIndex((e) => e.type === 'poll.opened' && e.poll === pollId);
  const closed = seqd.findIndex((e) => e.type === 'poll.closed' && e.poll === pollId);
  check(opened >= 0 && closed > opened, 'EventSource: poll.opened before poll.closed');
  check(closed >= 0 && same(seqd[closed].counts, expect), `EventSource: poll.closed carries the final counts (${closed >= 0 ? seqd[closed].counts : '-'})`);
}

/** A multiple-choice poll saved as a draft, opened from the list; three voters pick two each. */
async function multiRound(pres, screen, voters, late) {
  const page = pres.page;
  await page.fill('#question', 'Which snacks should we order?');
  await page.selectOption('#kind', 'multi');
  await page.fill('#max', '2');
  await page.click('#add-option');
  const names = ['Fruit', 'Crisps', 'Cookies'];
  const inputs = await page.$$('#options input');
  for (let k = 0; k < names.length; k++) await inputs[k].fill(names[k]);
  await page.click('#create-draft');
  await waitFor(async () => (await page.$('.poll[data-state="draft"]')) !== null, 'the draft is listed');
  const id = Number(await page.getAttribute('.poll[data-state="draft"]', 'data-poll'));
  check(/up to 2/.test(await page.textContent(`.poll[data-poll="${id}"]`)), 'the console shows the max choices');
  await page.click(`.poll[data-poll="${id}"] button`);
  await waitFor(async () => (await page.$(`.poll[data-poll="${id}"][data-state="open"]`)) !== null, 'the draft opened');
  const picks = [[0, 1], [0, 2], [1, 2]];
  for (const [k, p] of voters.entries()) {
    const card = `section[data-poll="${id}"]`;
    await p.page.waitForSelector(`${card}[data-mode="ask"]`, { timeout: WAIT_MS });
    await p.page.click(`${card} label.choice:nth-child(${picks[k][0] + 1})`);
    await p.page.click(`${card} label.choice:nth-child(${picks[k][1] + 1})`);
    const third = await p.page.$eval(`${card} label.choice:nth-child(${3 - picks[k][0] - picks[k][1] + 1}) input`, (i) => i.disabled);
    check(third, 'a third choice is disabled at max_choices');
    await p.page.click(`${card} button.vote-btn`);
    await waitFor(async () => (await p.page.getAttribute(card, 'data-mode')) === 'counted', `multi vote ${k} counted`);
  }
  await waitFor(async () => same(await barCounts(page, `.poll[data-poll="${id}"]`), [2, 2, 2]), 'multi counts on the console');
  if (late) await lateVote(pres, late, id);
  await waitFor(async () => /3 voters/.test(await page.textContent(`.poll[data-poll="${id}"] .meta`)), 'three voters (counts add up to six)');
  await waitFor(async () => same(await barCounts(screen.page, '#show'), [2, 2, 2]), 'the screen follows the newest open poll');
  const pcts = await page.$$eval(`.poll[data-poll="${id}"] .bars .num`, (ns) => ns.map((n) => n.textContent.split('· ')[1]));
  check(same(pcts, ['67%', '67%', '67%']), `multi percentages are of voters (${pcts})`);
}

/**
 * A vote cast offline stays pending (never "counted") and is retried with
 * its key; the poll closes meanwhile, so back online it is refused and the
 * page says why.
 */
async function lateVote(pres, p, id) {
  const card = `section[data-poll="${id}"]`;
  await p.page.waitForSelector(`${card}[data-mode="ask"]`, { timeout: WAIT_MS });
  await p.ctx.setOffline(true);
  await waitFor(async () => (await p.page.getAttribute('#conn', 'data-state')) === 'offline', 'offline before voting');
  await p.page.click(`${card} label.choice:nth-child(1)`);
  await p.page.click(`${card} button.vote-btn`);
  await waitFor(async () => /not counted yet/.test(await p.page.textContent(card)), 'an offline vote is shown as not counted yet');
  const key = await p.page.evaluate(({ c, pid, poll }) => JSON.parse(localStorage.getItem(`tally.v.${c}.${pid}`))[poll].key,
    { c: pres.code, pid: p.id, poll: id });
  await pres.page.click(`.poll[data-poll="${id}"] button`);
  await waitFor(async () => (await pres.page.$(`.poll[data-poll="${id}"][data-state="closed"]`)) !== null, 'the multi poll closed');
  await p.ctx.setOffline(false);
  await waitFor(async () => (await p.page.getAttribute(card, 'data-mode')) === 'late', 'back online: the late vote is refused');
  check(/closed before your vote arrived/.test(await p.page.textContent(card)), 'the page explains the poll closed first');
  const after = await p.page.evaluate(({ c, pid, poll }) => JSON.parse(localStorage.getItem(`tally.v.${c}.${pid}`))[poll].key,
    { c: pres.code, pid: p.id, poll: id });
  check(after === key, 'the retried vote kept its idempotency key');
  check(same(await barCounts(pres.page, `.poll[data-poll="${id}"]`), [2, 2, 2]), 'the late vote is not counted');
}

async function screenshots(pres, screen, parts, pollId, phase) {
  const p = parts[0].page;
  if (phase === 'open') {
    await shot(p, 'join-phone');
    await shot(pres.page, 'present-desktop');
    await shot(screen.page, 'screen-desktop');
    await shot(p, 'join-desktop', DESKTOP); await p.setViewportSize(PHONE);
    await shot(pres.page, 'present-phone', PHONE); await pres.page.setViewportSize(DESKTOP);
    await shot(screen.page, 'screen-phone', PHONE); await screen.page.setViewportSize(DESKTOP);
  } else {
    await shot(p, 'join-closed-phone');
    await shot(screen.page, 'screen-closed-desktop');
  }
  if (process.env.TALLY_E2E_DOCS_IMG === '1') {
    fs.mkdirSync(DOCS_IMG, { recursive: true });
    for (const f of shots.filter((x) => DOCS_SHOTS.includes(path.basename(x, '.png')))) {
      fs.copyFileSync(f, path.join(DOCS_IMG, path.basename(f)));
    }
  }
}

try {
  await main();
} catch (e) {
  check(false, `no exception: ${e.stack}`);
} finally {
  if (srv.exit === null) {
    srv.proc.kill('SIGTERM');
    for (let i = 0; i < 100 && srv.exit === null; i++) await sleep(100);
    if (srv.exit === null) srv.proc.kill('SIGKILL');
  }
  await sleep(200);
  pgStop(dataDir);
  if (failed) console.log(fs.readFileSync(logPath, "utf8").slice(-3000));
  if (process.env.TALLY_E2E_KEEP_LOG) fs.copyFileSync(logPath, process.env.TALLY_E2E_KEEP_LOG);
  fs.rmSync(tmp, { recursive: true, force: true });
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
