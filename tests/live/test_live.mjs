// Live sessions end to end, with clients written by others: the `ws`
// package for WebSocket (JSON and MessagePack subprotocols), Node's http for
// Server-Sent Events. Starts tallyd on a private embedded PostgreSQL.
//
// usage: node test_live.mjs PATH/TO/tallyd [WS_CLIENTS=500] [SSE_CLIENTS=50]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { pgStop, startTallyd } from '../tallyd.mjs';
import { decode as mpDecode, encode as mpEncode } from '@msgpack/msgpack';

const BIN = process.argv[2];
const N_WS = Number(process.argv[3] || 500);
const N_SSE = Number(process.argv[4] || 50);
const N_MSGPACK = Math.floor(N_WS / 5);
const N_RESUME = Math.floor(N_WS / 10);

let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) passed++; else { failed++; console.log('FAIL:', what); }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-live-'));
fs.chmodSync(dataDir, 0o755);
const logPath = path.join(dataDir, 'tallyd.log');
const srv = await startTallyd(BIN, dataDir, logPath);
const { port, base } = srv;

function psql(sql) {
  const args = ['-h', path.join(dataDir, 'run'), '-U', 'tally', '-d', 'postgres', '-At', '-c', sql];
  return execFileSync('psql', args, { encoding: 'utf8' }).trim();
}

async function api(method, p, body, token, headers = {}) {
  const h = { 'content-type': 'application/json', ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  const r = await fetch(base + p, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json };
}

// One subscriber's view; checks the contract's ordering rules as it goes.
class View {
  constructor(name) {
    this.name = name; this.first = null; this.seqs = []; this.types = [];
    this.opened = new Set(); this.closed = new Set(); this.lastCounts = new Map();
    this.lastVersion = new Map(); this.acks = new Map(); this.errors = []; this.violations = [];
    this.hello = null; this.closeCode = null; this.ended = false;
  }
  on(msg) {
    if (this.first === null) this.first = msg.type;
    if (msg.type === 'hello') { this.hello = msg.data; this.helloSeq = msg.data.seq; return; }
    if (['poll.created', 'poll.opened', 'poll.closed', 'session.closed'].includes(msg.type)) {
      this.seqs.push(msg.seq); this.types.push(msg.type);
      if (msg.type === 'poll.opened') this.opened.add(msg.data.id);
      if (msg.type === 'poll.closed') { this.closed.add(msg.data.id); this.lastCounts.set(msg.data.id, msg.data.counts); }
      return;
    }
    if (msg.type === 'results') {
      const d = msg.data;
      if (!this.opened.has(d.poll_id) && !(this.resumedOpen && this.resumedOpen.has(d.poll_id)))
        this.violations.push(`results for poll ${d.poll_id} before poll.opened`);
      if (this.closed.has(d.poll_id)) this.violations.push(`results for poll ${d.poll_id} after poll.closed`);
      const v = this.lastVersion.get(d.poll_id) ?? -1;
      if (d.version < v) this.violations.push(`version went back on poll ${d.poll_id}`);
      this.lastVersion.set(d.poll_id, d.version); this.lastCounts.set(d.poll_id, d.counts);
      return;
    }
    if (msg.type === 'ack') { this.acks.set(msg.data.id, msg.data); return; }
    if (msg.type === 'error') { this.errors.push(msg.data); return; }
  }
}

function wsConnect(code, token, { msgpack = false, since = null, view }) {
  let url = `ws://127.0.0.1:${port}/api/v1/sessions/${code}/ws?token=${encodeURIComponent(token)}`;
  if (since !== null) url += `&since=${since}`;
  const ws = new WebSocket(url, [msgpack ? 'tally.v1.msgpack' : 'tally.v1.json']);
  ws.view = view; ws.msgpack = msgpack;
  ws.on('message', (data, isBinary) => {
    const msg = isBinary ? mpDecode(data) : JSON.parse(data.toString());
    if (msgpack && !isBinary) view.violations.push('text frame on a msgpack connection');
    view.on(msg);
  });
  ws.on('close', (code) => { view.closeCode = code; });
  ws.on('error', () => {});
  ws.ready = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('unexpected-response', (_, res) => reject(new Error(`status ${res.statusCode}`))); });
  ws.vote = (id, pollId, choice) => {
    const m = { type: 'vote', id, poll_id: pollId, choice };
    ws.send(msgpack ? mpEncode(m) : JSON.stringify(m));
  };
  return ws;
}

function sseConnect(code, token, view, since = null) {
  let p = `/api/v1/sessions/${code}/events?token=${encodeURIComponent(token)}`;
  if (since !== null) p += `&since=${since}`;
  const req = http.get({ host: '127.0.0.1', port, path: p, headers: { accept: 'text/event-stream' } });
  req.on('response', (res) => {
    view.status = res.statusCode; view.ctype = res.headers['content-type'];
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        const ev = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const k = line.slice(0, line.indexOf(':')); const v = line.slice(line.indexOf(':') + 1).trimStart();
          ev[k] = v;
        }
        if (!ev.data) continue;
        const msg = JSON.parse(ev.data);
        if (msg.type !== ev.event) view.violations.push(`SSE event ${ev.event} carries ${msg.type}`);
        if ((msg.seq !== undefined) !== (ev.id !== undefined) || (ev.id !== undefined && Number(ev.id) !== msg.seq))
          view.violations.push('SSE id does not match seq');
        view.on(msg);
      }
    });
    res.on('end', () => { view.ended = true; });
  });
  req.on('error', () => {});
  return req;
}

async function until(cond, ms, what) {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) { check(false, `timed out waiting for ${what}`); return false; }
    await sleep(20);
  }
  return true;
}

async function main() {
  for (let i = 0; i < 300 && srv.exit === null; i++) {
    try { if ((await fetch(base + '/healthz')).ok) break; } catch { /* starting */ }
    await sleep(100);
  }
  const s = await api('POST', '/api/v1/sessions', { title: 'Live' });
  check(s.status === 201, 'create session');
  const code = s.json.session.code, ptok = s.json.presenter_token;

  // Participants join (in parallel batches).
  const parts = [];
  for (let i = 0; i < N_WS + N_SSE; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, N_WS + N_SSE - i) },
      () => api('POST', `/api/v1/sessions/${code}/participants`, {})));
    for (const r of batch) { check(r.status === 201, 'join'); parts.push(r.json); }
  }

  // Bad subscriptions.
  const bad = await api('GET', `/api/v1/sessions/${code}/events?token=nope`);
  check(bad.status === 401, `SSE with an unknown token: 401 (got ${bad.status})`);
  const noUp = await api('GET', `/api/v1/sessions/${code}/ws?token=${ptok}`);
  check(noUp.status === 426 || noUp.status === 400, `GET ws without upgrade: 426 (got ${noUp.status})`);

  // Subscribers.
  const presenter = new View('presenter');
  const pws = wsConnect(code, ptok, { view: presenter });
  const wsViews = [], socks = [];
  for (let i = 0; i < N_WS; i++) {
    const v = new View(`ws${i}`);
    wsViews.push(v);
    socks.push(wsConnect(code, parts[i].participant_token, { msgpack: i < N_MSGPACK, view: v }));
  }
  const sseViews = [], sseReqs = [];
  for (let i = 0; i < N_SSE; i++) {
    const v = new View(`sse${i}`);
    sseViews.push(v);
    sseReqs.push(sseConnect(code, parts[N_WS + i].participant_token, v));
  }
  await Promise.all([pws.ready, ...socks.map((w) => w.ready)]);
  await until(() => [presenter, ...wsViews, ...sseViews].every((v) => v.hello), 10000, 'hello everywhere');
  check(wsViews.every((v) => v.first === 'hello') && sseViews.every((v) => v.first === 'hello'), 'hello comes first');
  check(sseViews.every((v) => v.status === 200 && (v.ctype || '').startsWith('text/event-stream')), 'SSE head');
  check(presenter.hello.you.role === 'presenter' && wsViews[0].hello.you.role === 'participant', 'hello.you role');

  const acked = new Map(); // poll id -> counts from acks
  const polls = [];
  let resumers = [];
  for (let round = 0; round < 3; round++) {
    const kind = ['single', 'multi', 'rating'][round];
    const body = { question: `Q${round}`, kind, options: kind === 'rating' ? ['1', '2', '3', '4', '5'] : ['a', 'b', 'c'] };
    if (kind === 'multi') body.max_choices = 2;
    const pc = await api('POST', `/api/v1/sessions/${code}/polls`, body, ptok);
    check(pc.status === 201, 'create poll');
    const poll = pc.json.poll; polls.push(poll);
    check((await api('POST', `/api/v1/polls/${poll.id}/open`, null, ptok)).status === 200, 'open poll');
    const counts = new Array(poll.options.length).fill(0);
    const choiceOf = (i) => kind === 'multi' ? [i % 3, (i + 1) % 3] : [i % poll.options.length];
    // WebSocket votes (from the clients connected now).
    const voters = [];
    socks.forEach((w, i) => { if (w.readyState === WebSocket.OPEN) { w.vote(`v${round}-${i}`, poll.id, choiceOf(i)); voters.push(i); } });
    for (let j = 0; j < N_SSE; j++) voters.push(N_WS + j);
    // SSE participants vote over HTTP.
    await Promise.all(sseViews.map((v, j) => api('POST', `/api/v1/polls/${poll.id}/votes`, { choice: choiceOf(N_WS + j) },
      parts[N_WS + j].participant_token, { 'idempotency-key': `h${round}-${j}` }).then((r) => {
      check(r.status === 201, `HTTP vote 201 (got ${r.status})`);
    })));
    await until(() => wsViews.every((v, i) => socks[i].readyState !== WebSocket.OPEN || v.acks.has(`v${round}-${i}`)), 20000, `acks of round ${round}`);
    for (const i of voters) for (const c of choiceOf(i)) counts[c]++;
    check(wsViews.every((v, i) => socks[i].readyState !== WebSocket.OPEN || v.acks.get(`v${round}-${i}`).status === 'accepted'), 'every WebSocket vote accepted');
    // The same id again: duplicate with the same vote.
    const first = wsViews[0].acks.get(`v${round}-0`);
    wsViews[0].acks.delete(`v${round}-0`);
    socks[0].vote(`v${round}-0`, poll.id, choiceOf(1));
    await until(() => wsViews[0].acks.has(`v${round}-0`), 5000, 'duplicate ack');
    const dup = wsViews[0].acks.get(`v${round}-0`);
    check(dup && dup.status === 'duplicate' && dup.vote.id === first.vote.id, 'same id: duplicate with the original vote');
    acked.set(poll.id, counts);
    await sleep(250); // let coalesced results flow
    if (round === 0) {
      // Some clients drop now and come back after the next poll opened.
      resumers = socks.slice(N_MSGPACK, N_MSGPACK + N_RESUME).map((w, k) => ({ idx: N_MSGPACK + k, w }));
      for (const r of resumers) r.w.terminate();
    }
    if (round === 1) {
      for (const r of resumers) {
        const v = wsViews[r.idx];
        const since = v.seqs.length ? v.seqs.at(-1) : 0;
        socks[r.idx] = wsConnect(code, parts[r.idx].participant_token, { since, view: v });
      }
      await Promise.all(resumers.map((r) => socks[r.idx].ready));
    }
    const cl = await api('POST', `/api/v1/polls/${poll.id}/close`, null, ptok);
    check(cl.status === 200, 'close poll');
  }
  check((await api('POST', `/api/v1/sessions/${code}/close`, null, ptok)).status === 200, 'close session');
  const all = [presenter, ...wsViews, ...sseViews];
  await until(() => all.every((v) => v.types.includes('session.closed')), 10000, 'session.closed everywhere');

  // Order: the same gap-free sequence everywhere, also for the clients that resumed.
  const ref = presenter.seqs;
  check(ref.length === 10 && ref.every((q, i) => q === i + 1), `presenter sees seq 1..10 (${ref})`);
  const sameOrder = all.filter((v) => JSON.stringify(v.seqs) !== JSON.stringify(ref) || JSON.stringify(v.types) !== JSON.stringify(presenter.types));
  check(sameOrder.length === 0, `every subscriber saw the same gap-free order (${sameOrder.slice(0, 3).map((v) => v.name + ':' + v.seqs)})`);
  const viol = all.flatMap((v) => v.violations.map((x) => `${v.name}: ${x}`));
  check(viol.length === 0, `ordering rules hold (${viol.slice(0, 3)})`);
  // Final counts: poll.closed everywhere = acks = database.
  for (const p of polls) {
    const db = psql(`SELECT string_agg(c::text || ':' || n::text, ',' ORDER BY c) FROM (SELECT unnest(choices) AS c, count(*) AS n FROM votes WHERE poll_id = ${p.id} GROUP BY 1) x`);
    const dbCounts = new Array(p.options.length).fill(0);
    for (const kv of db.split(',').filter(Boolean)) { const [c, n] = kv.split(':').map(Number); dbCounts[c] = n; }
    check(JSON.stringify(dbCounts) === JSON.stringify(acked.get(p.id)), `poll ${p.id}: database counts equal the acks (${dbCounts} vs ${acked.get(p.id)})`);
    const wrong = all.filter((v) => JSON.stringify(v.lastCounts.get(p.id)) !== JSON.stringify(dbCounts));
    check(wrong.length === 0, `poll ${p.id}: every subscriber's last counts equal the database (${wrong.length} differ)`);
  }
  check(wsViews.every((v) => v.errors.length === 0), 'no error messages on WebSockets');

  // A malformed message gets an error and the connection stays open.
  socks[1].send('{"type":"nope"}');
  await until(() => wsViews[1].errors.length === 1, 5000, 'error for unknown type');
  check(wsViews[1].errors[0]?.code === 'invalid_request' && wsViews[1].errors[0]?.id === null, 'unknown type: invalid_request, id null');
  check(socks[1].readyState === WebSocket.OPEN, 'connection stays open after a bad message');

  // Shutdown: WebSockets get 1001, event streams end, exit 0.
  srv.proc.kill('SIGTERM');
  await until(() => srv.exit !== null, 15000, 'exit after SIGTERM');
  check(srv.exit === 0, `exit 0 after SIGTERM (got ${srv.exit})`);
  await until(() => wsViews.slice(0, 20).every((v) => v.closeCode !== null), 5000, 'WebSocket close codes');
  check(wsViews.slice(0, 20).every((v) => v.closeCode === 1001), `WebSockets closed with 1001 (${wsViews[0].closeCode})`);
  check(sseViews.every((v) => v.ended), 'event streams ended');
}

try {
  await main();
} catch (e) {
  check(false, `no exception: ${e.stack}`);
} finally {
  if (srv.exit === null) srv.proc.kill('SIGKILL');
  await sleep(200);
  pgStop(dataDir);
  if (failed) console.log(fs.readFileSync(logPath, 'utf8').slice(-4000));
  fs.rmSync(dataDir, { recursive: true, force: true });
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
