// The start page: join by code, or create a session and present it.
import { $, el, store, normCode, validCode, api } from '/assets/common.js';

const LOOKALIKES = /[01IOL]/;

$('#join').addEventListener('submit', (e) => {
  e.preventDefault();
  const code = normCode($('#code').value);
  const err = $('#code-error');
  if (validCode(code)) { location.assign(`/j/${code}`); return; }
  err.textContent = code.length !== 6 ? 'A session code has 6 characters.'
    : LOOKALIKES.test(code) ? 'Codes never contain 0, 1, I, L or O: check the letters with the presenter.'
      : 'That is not a session code: use letters and digits only.';
  $('#code').focus();
});

$('#create').addEventListener('submit', async (e) => {
  e.preventDefault();
  const title = $('#title').value.trim();
  const err = $('#create-error');
  if (!title) { err.textContent = 'Give the session a title.'; $('#title').focus(); return; }
  const btn = e.target.querySelector('button');
  btn.disabled = true;
  try {
    const r = await api('POST', '/api/v1/sessions', { body: { title } });
    store.set(`tally.pt.${r.session.code}`, r.presenter_token);
    store.set(`tally.title.${r.session.code}`, title);
    location.assign(`/present/${r.session.code}`);
  } catch (ex) {
    err.textContent = ex.status === 0 ? 'The server cannot be reached. Check the connection and try again.' : ex.message;
    btn.disabled = false;
  }
});

// Sessions this browser presents (their tokens are in localStorage).
const mine = store.keys('tally.pt.').map((k) => k.slice(9)).filter(validCode);
if (mine.length) {
  $('#mine').hidden = false;
  $('#mine-list').append(...mine.map((c) => el('li', {}, el('a', { class: 'btn ghost', href: `/present/${c}` },
    `${store.get(`tally.title.${c}`) || 'Session'} · ${c}`))));
}

$('#code').addEventListener('input', () => { $('#code-error').textContent = ''; });
$('#title').addEventListener('input', () => { $('#create-error').textContent = ''; });
