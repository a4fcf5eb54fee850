// The participant page, /j/{code}: join, vote, watch the results.
import {
  $, el, store, pathCode, validCode, randomKey, api, backoff, Live, SessionState, Bars,
  fetchTotal, summary, announcer, statusPill, metaText,
} from '/assets/common.js';

const code = pathCode();
const ID_KEY = `tally.p.${code}`;
const ACK_WAIT_MS = 5000; // then the vote goes again over HTTP, same key

let me = store.get(ID_KEY); // {id, token}
let votes = {}; // poll id -> {key, choice, st: pending|counted|late|taken}
const state = new SessionState();
const cards = new Map(); // poll id -> {root, mode, bars}
const waitingAck = new Map(); // idempotency key -> timer
const inflight = new Set();
const retries = new Map(); // poll id -> attempts
let live = null, frame = 0;
const say = announcer($('#live'));
const onState = statusPill($('#conn'));

const votesKey = () => `tally.v.${code}.${me.id}`;
const saveVotes = () => store.set(votesKey(), votes);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function notice(kind, title, text, link) {
  const n = $('#notice');
  n.replaceChildren();
  if (!title) return;
  n.append(el('div', { class: `notice ${kind}` }, title,
    text ? el('p', { text }) : null, link ? el('p', {}, el('a', { href: link.href, text: link.text })) : null));
}

function fatal(what) {
  onState('offline');
  $('#conn').textContent = 'Not connected';
  $('#waiting').hidden = true;
  const other = { href: '/', text: 'Enter another code' };
  if (what === 'unknown') notice('bad', `No session has the code ${code || '(none)'}.`, 'Check the code with the presenter and type it again.', other);
  else if (what === 'closed') notice('bad', 'This session has ended.', 'Voting is over. Thank you for taking part!', other);
}

/** Joins the session once per browser; retries while the server is unreachable or busy. */
async function join() {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await api('POST', `/api/v1/sessions/${code}/participants`, { body: {} });
      me = { id: r.participant_id, token: r.participant_token };
      store.set(ID_KEY, me);
      store.del(`tally.v.${code}.${me.id}`);
      notice();
      return true;
    } catch (e) {
      if (e.status === 404) { fatal('unknown'); return false; }
      if (e.status === 409) { fatal('closed'); return false; }
      const wait = e.retryAfter ? e.retryAfter * 1000 : backoff(attempt);
      notice('warn', e.status ? 'The server is busy.' : 'The server cannot be reached.',
        `Trying again in ${Math.ceil(wait / 1000)} s…`);
      await sleep(wait);
    }
  }
}

// ---- votes --------------------------------------------------------------

function sendVote(pollId) {
  const rec = votes[pollId];
  if (!rec || rec.st !== 'pending' || inflight.has(pollId) || waitingAck.has(rec.key)) return;
  if (live.send({ type: 'vote', id: rec.key, poll_id: pollId, choice: rec.choice })) {
    waitingAck.set(rec.key, setTimeout(() => { waitingAck.delete(rec.key); httpVote(pollId); }, ACK_WAIT_MS));
  } else {
    httpVote(pollId);
  }
}

async function httpVote(pollId) {
  const rec = votes[pollId];
  if (!rec || rec.st !== 'pending' || inflight.has(pollId)) return;
  inflight.add(pollId);
  try {
    await api('POST', `/api/v1/polls/${pollId}/votes`,
      { token: me.token, body: { choice: rec.choice }, headers: { 'Idempotency-Key': rec.key } });
    settle(pollId, 'counted');
  } catch (e) {
    voteFailed(pollId, e.code, e.status, e.retryAfter);
  } finally {
    inflight.delete(pollId);
  }
}

function settle(pollId, st) {
  const rec = votes[pollId];
  if (!rec) return;
  clearTimeout(waitingAck.get(rec.key));
  waitingAck.delete(rec.key);
  retries.delete(pollId);
  rec.st = st;
  saveVotes();
  render();
}

/** A vote not taken: final answers change the card, passing trouble retries with the same key. */
function voteFailed(pollId, errCode, status, retryAfter = 0) {
  const rec = votes[pollId];
  if (!rec || rec.st !== 'pending') return;
  clearTimeout(waitingAck.get(rec.key));
  waitingAck.delete(rec.key);
  if (errCode === 'poll_not_open') return settle(pollId, 'late');
  if (errCode === 'already_voted') return settle(pollId, 'taken');
  if (errCode === 'invalid_request' || errCode === 'not_found') {
    delete votes[pollId];
    saveVotes();
    notice('bad', 'The vote was refused.', 'Please choose again.');
    return render();
  }
  if (status === 401 || status === 403) return lostIdentity();
  const n = retries.get(pollId) || 0;
  retries.set(pollId, n + 1);
  const card = cards.get(pollId);
  if (card) card.root.dataset.retry = '1';
  render();
  setTimeout(() => sendVote(pollId), retryAfter ? retryAfter * 1000 : backoff(n));
}

function onSubmit(e, poll) {
  e.preventDefault();
  const choice = [...e.target.querySelectorAll('input:checked')].map((i) => Number(i.value));
  if (!choice.length || votes[poll.id]) return;
  votes[poll.id] = { key: randomKey(), choice, st: 'pending' };
  saveVotes(); // the key is kept before the first send: a retry reuses it
  notice();
  render();
  sendVote(poll.id);
}

// ---- rendering ------------------------------------------------------------

function modeOf(poll) {
  const rec = votes[poll.id];
  if (rec) return rec.st === 'pending' ? 'pending' : rec.st;
  return poll.state === 'open' ? 'ask' : 'closed';
}

function askForm(poll) {
  const multi = poll.kind === 'multi';
  const scale = poll.kind === 'rating';
  const hint = multi ? `Choose up to ${poll.max_choices}.`
    : scale ? `Rate from ${poll.options[0]} to ${poll.options.at(-1)}.` : 'Choose one.';
  const btn = el('button', { class: 'vote-btn', type: 'submit', disabled: true, text: 'Vote' });
  const inputs = poll.options.map((o, i) => el('input', { type: multi ? 'checkbox' : 'radio', name: `c${poll.id}`, value: i }));
  const group = el('div', { class: `choices${scale ? ' scale' : ''}` },
    ...inputs.map((inp, i) => el('label', { class: 'choice' }, inp, el('span', { text: poll.options[i] }))));
  const form = el('form', { onsubmit: (e) => onSubmit(e, poll) },
    el('fieldset', {}, el('legend', { id: `q${poll.id}`, text: poll.question }),
      el('p', { class: 'hint', id: `h${poll.id}`, text: hint }), group), btn);
  form.addEventListener('change', () => {
    const n = inputs.filter((i) => i.checked).length;
    btn.disabled = n === 0;
    if (multi) for (const i of inputs) i.disabled = !i.checked && n >= poll.max_choices;
  });
  return form;
}

const STATUS = {
  pending: ['state', 'Sending your vote…'],
  counted: ['notice ok', '✓ Your vote is counted.'],
  taken: ['notice ok', '✓ You already voted on this poll.'],
  late: ['notice bad', 'This poll closed before your vote arrived, so it was not counted.'],
};

function buildCard(poll, mode) {
  const root = el('section', { class: 'card', 'data-poll': poll.id, 'data-mode': mode, 'aria-labelledby': `q${poll.id}` });
  if (mode === 'ask') {
    root.append(askForm(poll));
    return { root, mode };
  }
  const badge = poll.state === 'open' ? el('span', { class: 'badge open', text: 'Live results' })
    : el('span', { class: 'badge', text: 'Final results' });
  root.append(el('div', { class: 'row-flex' }, badge), el('h1', { id: `q${poll.id}`, text: poll.question }));
  if (STATUS[mode]) {
    const [cls, text] = STATUS[mode];
    const s = el('div', { class: cls, role: 'status' }, mode === 'pending' ? el('span', { class: 'spinner', 'aria-hidden': 'true' }) : null, el('span', { class: 'msg', text }));
    root.append(s);
  }
  const bars = new Bars(poll);
  root.append(bars.root, el('p', { class: 'meta' }));
  return { root, mode, bars };
}

function updateCard(card, poll) {
  const rec = votes[poll.id];
  if (card.mode === 'pending') {
    const retrying = card.root.dataset.retry === '1';
    card.root.querySelector('.msg').textContent = retrying
      ? 'Connection trouble: sending your vote again (not counted yet)…' : 'Sending your vote…';
  }
  if (!card.bars) return;
  card.bars.update(poll, rec && rec.st === 'counted' ? rec.choice : []);
  const meta = card.root.querySelector('.meta');
  const t = metaText(poll);
  if (meta.textContent !== t) meta.textContent = t;
  if (card.mode !== 'pending') say(summary(poll), poll.state === 'closed');
}

function visiblePolls() {
  const open = state.open().reverse();
  const last = state.lastClosed();
  return last && (!open.length || votes[last.id]) ? [...open, last] : open;
}

function render() {
  if (frame) return;
  frame = requestAnimationFrame(() => { frame = 0; draw(); });
}

function draw() {
  const list = visiblePolls();
  const box = $('#polls');
  const want = [];
  let focusTo = null;
  for (const poll of list) {
    const mode = modeOf(poll);
    let card = cards.get(poll.id);
    if (!card || card.mode !== mode || card.state !== poll.state) {
      const hadFocus = card && card.root.contains(document.activeElement);
      card = buildCard(poll, mode);
      card.state = poll.state;
      cards.set(poll.id, card);
      if (hadFocus) focusTo = card.root.querySelector('h1') || card.root.querySelector('input');
    }
    updateCard(card, poll);
    want.push(card.root);
    if (poll.state === 'closed' && poll.total === undefined && !card.fetching) {
      card.fetching = true;
      fetchTotal(state, poll.id, me.token).then(render);
    }
  }
  for (const id of cards.keys()) if (!list.some((p) => p.id === id)) cards.delete(id);
  if (want.length !== box.children.length || want.some((n, i) => box.children[i] !== n)) box.replaceChildren(...want);
  if (focusTo) { if (focusTo.tagName === 'H1') focusTo.tabIndex = -1; focusTo.focus(); }
  const closed = state.session && state.session.state === 'closed';
  $('#waiting').hidden = closed || state.open().length > 0;
  if (closed) notice('bad', 'This session has ended.', 'Voting is over. Thank you for taking part!', { href: '/', text: 'Join another session' });
  if (state.session) $('#title').textContent = state.session.title;
}

// ---- live -------------------------------------------------------------------

function onMessage(m) {
  if (m.type === 'ack') {
    const id = Object.keys(votes).find((k) => votes[k].key === m.data.id);
    if (id) settle(Number(id), 'counted');
    return;
  }
  if (m.type === 'error') {
    const id = Object.keys(votes).find((k) => votes[k].key === m.data.id);
    if (id) voteFailed(Number(id), m.data.code, 0);
    return;
  }
  if (state.apply(m)) render();
  if (m.type === 'hello') resendPending();
}

/** After a (re)connect or a reload: votes never acknowledged go again, same key. */
function resendPending() {
  for (const [id, rec] of Object.entries(votes)) {
    if (rec.st !== 'pending') continue;
    clearTimeout(waitingAck.get(rec.key));
    waitingAck.delete(rec.key);
    sendVote(Number(id));
  }
}

async function lostIdentity() {
  // The server no longer knows this browser's token: join again as new.
  live?.stop();
  store.del(ID_KEY);
  me = null;
  if (await join()) startLive();
}

function startLive() {
  votes = store.get(votesKey()) || {};
  $('#who').textContent = `Code ${code} · you are participant #${me.id}`;
  live = new Live({
    code, token: me.token, onMessage, onState,
    onFatal: (e) => (e.status === 404 ? fatal('unknown') : lostIdentity()),
  });
  live.start();
}

async function main() {
  if (!validCode(code)) return fatal('unknown');
  document.title = `Tally: vote · ${code}`;
  if (location.pathname !== `/j/${code}`) history.replaceState(null, '', `/j/${code}`); // one spelling of the code
  if (!me && !(await join())) return;
  startLive();
}

main();
