// Shared by every Tally page: storage, the HTTP API client, the live
// connection (WebSocket with resume), poll state and result bars.

export const $ = (sel, root = document) => root.querySelector(sel);

/** Creates an element: el('p', {class: 'x', text: 'hi'}, child...). */
export function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// localStorage can throw (private modes, full quota): the page keeps working
// for this visit and only loses what it would have remembered.
export const store = {
  get(k) { try { return JSON.parse(localStorage.getItem(k)); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* memory only */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* nothing to drop */ } },
  keys(prefix) {
    try { return Object.keys(localStorage).filter((k) => k.startsWith(prefix)); } catch { return []; }
  },
};

// Join codes: 6 characters without look-alikes (no 0/O, 1/I/L).
const CODE_RE = /^[A-HJKMNP-Z2-9]{6}$/;
export function normCode(s) { return String(s || '').replace(/[\s-]/g, '').toUpperCase(); }
export function validCode(s) { return CODE_RE.test(s); }
/** The code in /j/CODE, /present/CODE or /screen/CODE, upper case. */
export function pathCode() { return normCode(location.pathname.split('/')[2]); }

/**
 * The presenter token of a session: from a link's fragment (`#token=`; kept,
 * then removed from the address bar so it is not shared on) or from storage.
 */
export function takePresenterToken(key) {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    store.set(key, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return store.get(key);
}

/** A random key usable as an idempotency key (works outside secure contexts). */
export function randomKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status; this.code = code; this.retryAfter = retryAfter;
  }
}

const API_TIMEOUT_MS = 10000;

/** One API call; resolves to the JSON body, throws ApiError (status 0: unreachable). */
export async function api(method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (body !== undefined) h['content-type'] = 'application/json';
  if (token) h.authorization = `Bearer ${token}`;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), API_TIMEOUT_MS);
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctl.signal, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'unreachable', 'The server cannot be reached.');
  } finally { clearTimeout(timer); }
  const type = r.headers.get('content-type') || '';
  const json = type.includes('json') ? await r.json().catch(() => null) : null;
  if (r.ok) return json ?? r;
  const e = json && json.error ? json.error : { code: 'http_' + r.status, message: r.statusText };
  throw new ApiError(r.status, e.code, e.message, Number(r.headers.get('retry-after')) || 0);
}

const BACKOFF_BASE_MS = 500;
const QUIET_RESUME_MS = 30000;
const BACKOFF_CAP_MS = 15000;

/** Delay before retry number `attempt` (0-based): exponential, capped, jittered. */
export function backoff(attempt) {
  const d = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 10));
  return Math.round(d * (0.6 + Math.random() * 0.4));
}

/**
 * The session's live stream over WebSocket. Keeps the last seen seq and
 * resumes with `since` after any break: a dead socket, the browser going
 * offline and back, the tab waking up. Events already contained in a
 * `hello` are not passed on again, so handlers see the state once.
 *
 * opts: code, token, onMessage(msg), onState(state, info), onFatal(ApiError)
 * states: connecting, open, reconnecting, offline
 */
export class Live {
  constructor(opts) {
    Object.assign(this, opts);
    this.seq = null; this.helloSeq = 0; this.ws = null; this.attempt = 0;
    this.timer = 0; this.stopped = false; this.everOpen = false; this.state = ''; this.lastHeard = Date.now();
  }

  start() {
    addEventListener('offline', () => this.goOffline());
    addEventListener('online', () => { this.attempt = 0; this.reconnectNow(true); });
    // A phone waking up may hold a socket that died while it slept: after
    // a long quiet spell, resume on a fresh one (since makes it cheap).
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) return;
      this.reconnectNow(Date.now() - this.lastHeard > QUIET_RESUME_MS);
    });
    this.connect();
  }

  isOpen() { return !!this.ws && this.ws.readyState === WebSocket.OPEN && this.state === 'open'; }

  send(obj) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  setState(s, info = {}) { this.state = s; this.onState?.(s, info); }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let u = `${proto}//${location.host}/api/v1/sessions/${this.code}/ws?token=${encodeURIComponent(this.token)}`;
    if (this.seq !== null) u += `&since=${this.seq}`;
    return u;
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    if (navigator.onLine === false) { this.setState('offline'); return; }
    this.setState(this.everOpen ? 'reconnecting' : 'connecting');
    const ws = new WebSocket(this.url(), 'tally.v1.json');
    this.ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (e) => { if (this.ws === ws) this.receive(e.data); };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      this.afterClose(opened, e.code);
    };
  }

  receive(text) {
    let m;
    this.lastHeard = Date.now();
    try { m = JSON.parse(text); } catch { return; }
    if (m.type === 'hello') {
      this.helloSeq = m.data.seq;
      this.seq = Math.max(this.seq ?? 0, m.data.seq);
      this.attempt = 0; this.everOpen = true;
      this.setState('open');
    } else if (typeof m.seq === 'number') {
      if (m.seq <= this.helloSeq) return; // already part of hello's state
      if (this.seq !== null && m.seq <= this.seq) return; // seen before
      this.seq = m.seq;
    }
    this.onMessage(m);
  }

  async afterClose(opened, code) {
    if (navigator.onLine === false) { this.setState('offline'); return; }
    // A socket that never opened was refused or never reached the server:
    // ask over HTTP why, to tell a lost network from a gone session.
    if (!opened) {
      try {
        const s = await api('GET', `/api/v1/sessions/${this.code}`, { token: this.token });
        if (this.seq !== null && s.seq < this.seq) { this.seq = null; this.helloSeq = 0; }
      } catch (e) {
        if (e.status === 401 || e.status === 403 || e.status === 404) { this.stop(); this.onFatal?.(e); return; }
      }
    }
    if (this.stopped) return;
    const quick = code === 1013 && opened; // server asked to resume at once
    const delay = quick ? 100 : backoff(this.attempt++);
    this.setState('reconnecting', { retryAt: Date.now() + delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  goOffline() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.setState('offline');
  }

  /** Connects at once; an open or opening socket is kept unless `force`. */
  reconnectNow(force = false) {
    if (this.stopped || (!force && this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
  }
}

/**
 * Session state kept from the live stream: polls by id with their counts
 * and voter totals. apply() returns true when something visible changed.
 */
export class SessionState {
  constructor() { this.session = null; this.polls = new Map(); this.participants = null; }

  upsert(p) {
    const old = this.polls.get(p.id);
    const total = old && old.total !== undefined && old.state === p.state ? old.total : undefined;
    this.polls.set(p.id, { ...p, total: p.total ?? total ?? impliedTotal(p) });
  }

  apply(m) {
    const d = m.data;
    switch (m.type) {
      case 'hello':
        this.session = d.session;
        for (const p of d.polls) this.upsert(p);
        for (const id of [...this.polls.keys()]) if (!d.polls.some((p) => p.id === id)) this.polls.delete(id);
        return true;
      case 'poll.created': case 'poll.opened': case 'poll.closed':
        this.upsert(d); return true;
      case 'session.closed': this.session = d; return true;
      case 'results': {
        const p = this.polls.get(d.poll_id);
        if (!p || (p.version !== undefined && d.version < p.version)) return false;
        Object.assign(p, { counts: d.counts, total: d.total, version: d.version });
        return true;
      }
      case 'presence': this.participants = d.participants; return true;
      default: return false;
    }
  }

  list() { return [...this.polls.values()].sort((a, b) => a.id - b.id); }
  open() { return this.list().filter((p) => p.state === 'open'); }
  lastClosed() { return this.list().filter((p) => p.state === 'closed').pop(); }
}

/** Voters of a poll when only counts are known (exact except for multi). */
function impliedTotal(p) {
  return p.kind === 'multi' ? undefined : (p.counts || []).reduce((a, b) => a + b, 0);
}

/** The voter total of a closed multi poll, which counts alone cannot tell. */
export async function fetchTotal(state, pollId, token) {
  try {
    const r = await api('GET', `/api/v1/polls/${pollId}/results`, { token });
    const p = state.polls.get(pollId);
    if (p) { p.total = r.total; p.counts = r.counts; }
    return true;
  } catch { return false; }
}

export function pct(n, total) { return total > 0 ? Math.round((100 * n) / total) : 0; }

const KIND_LABEL = { single: 'Single choice', multi: 'Multiple choice', rating: 'Rating' };
export const kindLabel = (p) => KIND_LABEL[p.kind] + (p.kind === 'multi' ? ` (up to ${p.max_choices})` : '');
export const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/**
 * Result bars for one poll, built once and then updated in place, so a
 * new count moves a bar instead of redrawing the list (no flicker).
 */
export class Bars {
  constructor(poll) {
    this.rows = poll.options.map((o) => {
      const fill = el('span', { class: 'fill' });
      const bar = el('span', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100',
        'aria-label': o }, fill);
      const num = el('span', { class: 'num' });
      const li = el('li', { class: 'row' }, el('span', { class: 'opt', text: o }), num, bar);
      return { li, bar, fill, num };
    });
    this.root = el('ol', { class: 'bars' }, ...this.rows.map((r) => r.li));
  }

  /** mine: indexes to mark as the viewer's own choice. */
  update(poll, mine = []) {
    const total = poll.total ?? 0;
    const max = Math.max(1, ...poll.counts);
    poll.counts.forEach((n, i) => {
      const r = this.rows[i];
      const p = pct(n, total);
      const text = `${plural(n, 'vote', 'votes')}, ${p}%`;
      if (r.num.textContent !== `${n} · ${p}%`) r.num.textContent = `${n} · ${p}%`;
      r.bar.setAttribute('aria-valuenow', String(p));
      r.bar.setAttribute('aria-valuetext', text + (mine.includes(i) ? ', your choice' : ''));
      r.fill.style.setProperty('--f', String(n / max));
      r.li.classList.toggle('mine', mine.includes(i));
      r.li.classList.toggle('lead', n > 0 && n === max);
    });
  }
}

/** The line under the bars: voters, and the average of a numeric rating. */
export function metaText(poll) {
  if (poll.total === undefined) return '';
  let t = plural(poll.total, 'voter', 'voters');
  const nums = poll.options.map(Number);
  if (poll.kind === 'rating' && poll.total > 0 && nums.every(Number.isFinite)) {
    const avg = poll.counts.reduce((a, n, i) => a + n * nums[i], 0) / poll.total;
    t += ` · average ${avg.toFixed(1)}`;
  }
  return t;
}

/** A one-line summary of results for the aria-live region. */
export function summary(poll) {
  const parts = poll.options.map((o, i) => `${o}: ${poll.counts[i]} (${pct(poll.counts[i], poll.total ?? 0)}%)`);
  return `${poll.question}. ${parts.join(', ')}. ${plural(poll.total ?? 0, 'voter', 'voters')}.`;
}

/** Announces text in an aria-live region at most every `ms`, keeping the latest. */
export function announcer(region, ms = 4000) {
  let last = 0, pending = null, timer = 0;
  const flush = () => { timer = 0; last = Date.now(); if (region.textContent !== pending) region.textContent = pending; };
  return (text, now = false) => {
    pending = text;
    if (now || Date.now() - last >= ms) { clearTimeout(timer); flush(); } else if (!timer) timer = setTimeout(flush, ms - (Date.now() - last));
  };
}

const STATE_TEXT = {
  connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline',
};

/** Shows a live connection's state in a status pill; returns the onState handler. */
export function statusPill(pill) {
  let tick = 0;
  return (s, info = {}) => {
    clearInterval(tick);
    pill.dataset.state = s;
    const show = () => {
      let t = STATE_TEXT[s];
      if (s === 'reconnecting' && info.retryAt) {
        const secs = Math.ceil((info.retryAt - Date.now()) / 1000);
        if (secs > 1) t = `Server unreachable, retrying in ${secs} s`;
      }
      if (pill.textContent !== t) pill.textContent = t;
    };
    show();
    if (info.retryAt) tick = setInterval(show, 1000);
  };
}
