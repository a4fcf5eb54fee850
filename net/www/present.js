// The presenter console, /present/{code}: polls, live bars, join details.
import {
  $, el, store, pathCode, validCode, api, Live, SessionState, Bars, fetchTotal, summary,
  announcer, statusPill, plural, metaText, kindLabel,
  takePresenterToken,
} from '/assets/common.js';

const code = pathCode();
const TOKEN_KEY = `tally.pt.${code}`;
const OPTIONS_MAX = 32;
const JOINED_REFRESH_MS = 3000;

const state = new SessionState();
const cards = new Map(); // poll id -> {root, state, bars}
const say = announcer($('#live'), 8000);
let token = null, live = null, frame = 0, joined = null, joinedAt = 0;

function notice(kind, title, text, link) {
  const n = $('#notice');
  n.replaceChildren();
  if (title) {
    n.append(el('div', { class: `notice ${kind}` }, title, text ? el('p', { text }) : null,
      link ? el('p', {}, el('a', { href: link.href, text: link.text })) : null));
  }
}

function fatal(title, text) {
  live?.stop();
  notice('bad', title, text, { href: '/', text: 'Go to the start page' });
  $('#conn').dataset.state = 'offline';
  $('#conn').textContent = 'Not connected';
  for (const b of document.querySelectorAll('main button, main input, main select')) b.disabled = true;
}

// ---- join panel and session actions --------------------------------------

function setupJoinPanel() {
  $('#join-url').textContent = `${location.host}/j/${code}`;
  $('#code').textContent = code;
  $('#qr').src = `/api/v1/sessions/${code}/qr.svg`;
  $('#screen-link').href = `/screen/${code}#token=${encodeURIComponent(token)}`;
  const coLink = `${location.origin}/present/${code}#token=${encodeURIComponent(token)}`;
  $('#copy-co').addEventListener('click', async () => {
    const b = $('#copy-co');
    try {
      await navigator.clipboard.writeText(coLink);
      b.textContent = 'Link copied';
    } catch {
      const i = $('#co-link'); // no clipboard outside secure contexts: show it to copy by hand
      i.value = coLink; i.hidden = false; i.select();
      b.textContent = 'Copy the link below';
    }
    setTimeout(() => { b.textContent = 'Copy co-presenter link'; }, 3000);
  });
  $('#export').addEventListener('click', exportCsv);
  const dlg = $('#confirm-close');
  $('#close-session').addEventListener('click', () => dlg.showModal());
  dlg.addEventListener('close', () => { if (dlg.returnValue === 'yes') act(() => api('POST', `/api/v1/sessions/${code}/close`, { token })); });
}

async function exportCsv() {
  try {
    const r = await fetch(`/api/v1/sessions/${code}/export.csv`, { headers: { authorization: `Bearer ${token}` } });
    if (!r.ok) throw new Error(`the server answered ${r.status}`);
    const url = URL.createObjectURL(await r.blob());
    const a = el('a', { href: url, download: `tally-${code}.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    notice('bad', 'The export failed.', `${e.message || e}. Try again in a moment.`);
  }
}

/** Runs a presenter action; its effect arrives over the live stream. */
async function act(fn) {
  try {
    await fn();
    notice();
    render(); // a state notice (session closed) may have arrived first
  } catch (e) {
    const text = e.status === 0 ? 'The server cannot be reached. Check the connection and try again.' : e.message;
    notice('bad', 'That did not work.', text);
  }
}

// ---- new poll form --------------------------------------------------------

function addOption(value = '') {
  const list = $('#options');
  if (list.children.length >= OPTIONS_MAX) return;
  const input = el('input', { type: 'text', maxlength: '200', value, autocomplete: 'off' });
  const rm = el('button', { type: 'button', class: 'ghost', text: '×' });
  const li = el('li', {}, input, rm);
  rm.addEventListener('click', () => {
    if (list.children.length <= 2) return;
    li.remove(); numberOptions();
    list.querySelector('input')?.focus();
  });
  list.append(li);
  numberOptions();
  return input;
}

function numberOptions() {
  [...$('#options').children].forEach((li, i) => {
    li.querySelector('input').setAttribute('aria-label', `Option ${i + 1}`);
    li.querySelector('button').setAttribute('aria-label', `Remove option ${i + 1}`);
  });
}

function onKindChange() {
  const k = $('#kind').value;
  $('#max-field').hidden = k !== 'multi';
  $('#scale-field').hidden = k !== 'rating';
  $('#options-set').hidden = k === 'rating';
}

function readForm() {
  const kind = $('#kind').value;
  const question = $('#question').value.trim();
  if (!question) return { error: 'Write a question first.', focus: '#question' };
  if (kind === 'rating') {
    const n = Number($('#scale').value);
    return { body: { question, kind, options: Array.from({ length: n }, (_, i) => String(i + 1)) } };
  }
  const options = [...$('#options').querySelectorAll('input')].map((i) => i.value.trim()).filter(Boolean);
  if (options.length < 2) return { error: 'Give at least two options.', focus: '#options input' };
  if (new Set(options).size !== options.length) return { error: 'Two options have the same text.', focus: '#options input' };
  const body = { question, kind, options };
  if (kind === 'multi') {
    const max = Number($('#max').value);
    if (!(max >= 1 && max <= options.length)) return { error: `Max choices must be 1 to ${options.length}.`, focus: '#max' };
    body.max_choices = max;
  }
  return { body };
}

async function onCreate(e) {
  e.preventDefault();
  const open = e.submitter ? e.submitter.value === '1' : true;
  const f = readForm();
  const err = $('#form-error');
  if (f.error) { err.textContent = f.error; $(f.focus).focus(); return; }
  err.textContent = '';
  const buttons = e.target.querySelectorAll('button[type=submit]');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const r = await api('POST', `/api/v1/sessions/${code}/polls`, { token, body: f.body });
    if (open) await api('POST', `/api/v1/polls/${r.poll.id}/open`, { token });
    $('#question').value = '';
    $('#options').replaceChildren();
    addOption(); addOption();
    $('#question').focus();
  } catch (ex) {
    err.textContent = ex.status === 0 ? 'The server cannot be reached; the poll was not created. Try again.' : ex.message;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function setupForm() {
  addOption(); addOption();
  $('#add-option').addEventListener('click', () => addOption()?.focus());
  $('#kind').addEventListener('change', onKindChange);
  $('#new-poll').addEventListener('submit', onCreate);
  onKindChange();
}

// ---- polls ----------------------------------------------------------------

const BADGE = { draft: 'Draft', open: 'Open', closed: 'Closed' };

function buildCard(poll) {
  const actions = el('div', { class: 'poll-actions' });
  if (poll.state === 'draft') {
    actions.append(el('button', { type: 'button', text: 'Open poll', 'aria-describedby': `pq${poll.id}`,
      onclick: () => act(() => api('POST', `/api/v1/polls/${poll.id}/open`, { token })) }));
  } else if (poll.state === 'open') {
    actions.append(el('button', { type: 'button', class: 'ghost', text: 'Close poll', 'aria-describedby': `pq${poll.id}`,
      onclick: () => act(() => api('POST', `/api/v1/polls/${poll.id}/close`, { token })) }));
  }
  const bars = new Bars(poll);
  const root = el('section', { class: 'card poll', 'data-poll': poll.id, 'data-state': poll.state, 'aria-labelledby': `pq${poll.id}` },
    el('div', { class: 'poll-head' }, el('h3', { id: `pq${poll.id}`, text: poll.question }),
      el('span', { class: `badge ${poll.state}`, text: BADGE[poll.state] })),
    el('p', { class: 'muted', text: kindLabel(poll) }), bars.root, el('p', { class: 'meta' }), actions);
  return { root, state: poll.state, bars };
}

function render() {
  if (frame) return;
  frame = requestAnimationFrame(() => { frame = 0; draw(); });
}

function draw() {
  const list = state.list().reverse();
  const closedSession = state.session?.state === 'closed';
  const nodes = list.map((poll) => {
    let card = cards.get(poll.id);
    if (!card || card.state !== poll.state) {
      const hadFocus = card && card.root.contains(document.activeElement);
      card = buildCard(poll);
      cards.set(poll.id, card);
      if (hadFocus) queueMicrotask(() => (card.root.querySelector('button') || $('#polls-h')).focus());
    }
    card.bars.update(poll);
    const meta = card.root.querySelector('.meta');
    const t = metaText(poll);
    if (meta.textContent !== t) meta.textContent = t;
    if (closedSession) card.root.querySelectorAll('button').forEach((b) => { b.disabled = true; });
    if (poll.state === 'closed' && poll.total === undefined && !card.fetching) {
      card.fetching = true;
      fetchTotal(state, poll.id, token).then(render);
    }
    return card.root;
  });
  place($('#polls'), nodes.filter((n) => n.dataset.state !== 'closed'));
  const done = nodes.filter((n) => n.dataset.state === 'closed');
  place($('#done'), done);
  $('#done-h').hidden = done.length === 0;
  const open = state.open();
  if (open.length) say(summary(open.at(-1)));
  if (state.session) {
    $('#title').textContent = state.session.title;
    document.title = `Tally: ${state.session.title} (${code})`;
  }
  drawPeople();
  if (closedSession) {
    notice('warn', 'This session is closed.', 'Nobody can join or vote any more. The results stay available for export.');
    for (const b of document.querySelectorAll('#new-poll button, #new-poll input, #new-poll select, #close-session')) b.disabled = true;
  }
}

/** Puts nodes into box in order, touching the DOM only when something moved. */
function place(box, nodes) {
  if (nodes.length !== box.children.length || nodes.some((n, i) => box.children[i] !== n)) box.replaceChildren(...nodes);
}

function drawPeople() {
  const on = state.participants;
  let t = on === null ? '' : `${plural(on, 'participant', 'participants')} online`;
  if (joined !== null) t += `${t ? ' · ' : ''}${joined} joined`;
  const p = $('#people');
  if (p.textContent !== t) p.textContent = t;
  if (on !== null) p.dataset.online = on;
}

/** The number who ever joined, from the session resource (presence counts those online). */
async function refreshJoined() {
  if (Date.now() - joinedAt < JOINED_REFRESH_MS) return;
  joinedAt = Date.now();
  try {
    joined = (await api('GET', `/api/v1/sessions/${code}`, { token })).participants;
    drawPeople();
  } catch { /* shown again at the next presence */ }
}

function onMessage(m) {
  if (state.apply(m)) render();
  if (m.type === 'presence' || m.type === 'hello') refreshJoined();
}

function main() {
  if (!validCode(code)) return fatal('This is not a session code.', 'Session codes have 6 letters and digits.');
  token = takePresenterToken(TOKEN_KEY);
  $('#code').textContent = code;
  if (!token) {
    return fatal('This console needs the presenter link.',
      'Open it on the device that created the session, or ask the presenter for the co-presenter link.');
  }
  setupJoinPanel();
  setupForm();
  live = new Live({
    code, token, onMessage, onState: statusPill($('#conn')),
    onFatal: (e) => {
      if (e.status === 404) return fatal(`No session has the code ${code}.`, 'Check the address, or create a new session.');
      store.del(TOKEN_KEY);
      fatal('This presenter link is not valid for this session.', 'Ask the presenter for a new co-presenter link.');
    },
  });
  live.start();
}

main();
