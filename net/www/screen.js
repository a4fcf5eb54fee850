// The big screen, /screen/{code}: the open poll's live bars and how to join.
import {
  $, store, pathCode, validCode, Live, SessionState, Bars, fetchTotal, statusPill, plural, metaText,
  takePresenterToken,
} from '/assets/common.js';

const code = pathCode();
const TOKEN_KEY = `tally.pt.${code}`;
const FADE_MS = 350;

const state = new SessionState();
let shown = null; // {id, state, bars} of the poll on screen
let token = null, frame = 0, fading = false;

function message(kicker, text) {
  $('#kicker').textContent = kicker;
  $('#question').textContent = text;
  $('#bars').replaceChildren();
  $('#voters').textContent = '';
}

/** The poll to show: the newest open one, else the last closed one's final results. */
function pick() {
  const open = state.open();
  return open.length ? open.at(-1) : state.lastClosed() || null;
}

function render() {
  if (frame || fading) return;
  frame = requestAnimationFrame(() => { frame = 0; draw(); });
}

function draw() {
  const poll = pick();
  const key = poll ? `${poll.id}:${poll.state}` : 'idle';
  if (!shown || shown.key !== key) {
    // A different poll (or a state change): fade out, swap, fade in.
    if (shown) {
      fading = true;
      $('#show').classList.add('fading');
      setTimeout(() => { fading = false; swap(poll, key); $('#show').classList.remove('fading'); render(); }, FADE_MS);
      return;
    }
    swap(poll, key);
  }
  if (poll) {
    shown.bars.update(poll);
    const t = metaText(poll);
    if ($('#voters').textContent !== t) $('#voters').textContent = t;
    if (poll.state === 'closed' && poll.total === undefined && !shown.fetching) {
      shown.fetching = true;
      fetchTotal(state, poll.id, token).then(render);
    }
  }
  const on = state.participants;
  const t = on === null ? '' : `${plural(on, 'person', 'people')} connected`;
  if ($('#online').textContent !== t) $('#online').textContent = t;
}

function swap(poll, key) {
  const show = $('#show');
  show.classList.toggle('idle', !poll);
  if (!poll) {
    shown = { key };
    const closed = state.session?.state === 'closed';
    message(closed ? 'Session closed' : 'Get ready', closed ? 'Thank you for taking part!' : 'Scan the code to join. The first question is coming.');
    return;
  }
  shown = { key, bars: new Bars(poll) };
  $('#kicker').textContent = poll.state === 'open' ? 'Vote now' : 'Final results';
  $('#question').textContent = poll.question;
  $('#bars').replaceChildren(shown.bars.root);
}

function fatal(title, text) {
  message(title, text);
  $('#conn').dataset.state = 'offline';
  $('#conn').textContent = 'Not connected';
}

function main() {
  $('#join-url').textContent = `${location.host}/j`;
  $('#code').textContent = code;
  if (!validCode(code)) return fatal('Unknown session', 'This is not a session code.');
  $('#qr').src = `/api/v1/sessions/${code}/qr.svg`;
  token = takePresenterToken(TOKEN_KEY);
  if (!token) return fatal('Presenter link needed', 'Open the big screen from the presenter console.');
  const live = new Live({
    code, token, onState: statusPill($('#conn')),
    onMessage: (m) => { if (state.apply(m)) render(); },
    onFatal: (e) => fatal(e.status === 404 ? 'Unknown session' : 'Presenter link needed',
      e.status === 404 ? `No session has the code ${code}.` : 'Open the big screen again from the presenter console.'),
  });
  live.start();
}

main();
