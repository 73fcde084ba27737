// Ballspot Studio review screen: player, timeline, event list, filmstrip and keyboard.
// Runs as the js_on_load of one gr.HTML (app/review.py); talks to Python through its
// `server.*` functions, and posts edits to the route app/review.py mounts. The game's events
// arrive once; every edit returns only the rows it changed (a delta from the store's change
// log), so an edit costs the same on a full match.
const $ = (id) => element.querySelector('#' + id);
// When this script started, in ms since the page's navigation (bench/ui.py reads it: the part of
// a cold load that is Gradio's own start, before this screen asks for anything).
element.dataset.scriptMs = String(Math.round(performance.now()));
const S = {
  game: null, fps: 25, frames: 1, events: new Map(), list: [], cursorId: 0, version: null,
  classes: [], colours: [], teams: ['home', 'away'], team: 'home', frame: 0, selected: null,
  view: [0, 1], sort: ['frame', 1], curve: null, curveLabel: null, busy: 0, rowH: 24, openSeq: 0,
  reviewed: null, login: null, zoomFrame: null, cut: null, cutOn: false,
  // Watching through: the frames played since the last Shift+A ({from, to}; null: none), and
  // whether the video played since the selection (then n / p go from the playhead).
  watched: null, playedSince: false,
};
const video = $('player');
const canvas = $('timeline-canvas');
const markersEl = $('markers');
const lanesEl = $('lanes');
const eventsEl = $('events');
// A lane is tall enough for markers of 10 px (a hit target a pointer finds) above and below its middle.
const LANE_H = 16, SCORE_H = 32, AXIS_H = 16, MARK = 10;
const KEYS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', '='];

// A server function that fails answers {error}: open_game, filmstrip and frame_image show it in
// place, the others on the status line (and give null).
async function call(name, payload) { return answered(name, await server[name](payload)); }
function answered(name, r) {
  if (r && typeof r === 'object' && !Array.isArray(r) && typeof r.error === 'string' && !('ok' in r)) {
    if (['game', 'filmstrip', 'frame_image'].includes(name)) return r;
    status(`${name}: ${r.error}`, 'error');
    return null;
  }
  return r;
}
// Edits, the calls an analyst waits on, and the games the screen opens have routes of their
// own (props.*_url, app/review.py), not Gradio's: the same answers, without its per-call work.
// A refusal of the server's guard is plain text; it is shown as the error.
async function route(name, url, options) {
  const r = await fetch(url, { credentials: 'same-origin', ...options });
  const text = await r.text();
  let answer;
  try { answer = JSON.parse(text); } catch { answer = { error: text.trim() || `HTTP ${r.status}` }; }
  return answered(name, answer);
}
const postEdit = (payload) => route('edit', props.edit_url, {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(payload) });
function status(text, kind) {
  const el = $('edit-status');
  el.textContent = text;
  el.title = text;
  el.dataset.kind = kind || 'info';
}
function clock(frame) {  // MM:SS.ff with ff the frame within the second, as core.labels.clock
  const s = Math.floor(frame / S.fps), f = frame - s * S.fps;
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}.${String(f).padStart(2, '0')}`;
}
// A frame number ("1234") or a game clock ("MM:SS", "MM:SS.ff" with ff the frame within the
// second, minutes past 60 allowed); null when it is neither.
function parseFrame(text) {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const m = /^(\d+):([0-5]?\d)(?:\.(\d{1,2}))?$/.exec(t);
  if (!m) return null;
  const ff = m[3] === undefined ? 0 : Number(m[3]);
  if (ff >= S.fps) return null;
  return (Number(m[1]) * 60 + Number(m[2])) * S.fps + ff;
}
function author() { return $('author').value.trim(); }

// ------------------------------------------------------------------ the reviewer's name
// Without logins the name typed here is the author of every edit; it is asked once, on the
// first edit, and kept in this browser. With logins the server takes the login and ignores it.
let asking = null;
async function ensureReviewer() {
  await whoami;  // with logins there is nothing to ask
  if (S.login || author() || localStorage.getItem('ballspot.author-asked')) return;
  if (!asking) {
    asking = new Promise((resolve) => {
      const box = $('reviewer-prompt'), input = $('reviewer-name');
      const done = (name) => {
        localStorage.setItem('ballspot.author-asked', '1');
        if (name) { $('author').value = name; localStorage.setItem('ballspot.author', name); }
        box.hidden = true; asking = null; resolve();
      };
      $('reviewer-form').onsubmit = (ev) => { ev.preventDefault(); done(input.value.trim().slice(0, 64)); };
      $('reviewer-skip').onclick = () => done('');
      input.onkeydown = (ev) => { if (ev.key === 'Escape') done(''); };
      box.hidden = false; input.focus();
    });
  }
  return asking;
}

// ------------------------------------------------------------------ games
function showGames(games, want) {
  const sel = $('game-select');
  sel.replaceChildren(...games.map(([name, id]) => {
    const o = document.createElement('option');
    o.value = String(id); o.textContent = name; return o;
  }));
  if (games.some(([, g]) => String(g) === String(want))) sel.value = String(want);
  sel.title = sel.selectedOptions[0] ? sel.selectedOptions[0].textContent : '';
}
async function loadGames() {
  const games = await call('list_games', {});
  if (games) showGames(games, $('game-select').value);
}
// The first screen: the picker and the game it opens on (the server decides which: core.review
// first_game). The page's head asked for it as the page started (window.ballspotStart, null if
// that failed: logged out then, say); asked here where it was not.
async function start() {
  let first = window.ballspotStart ? await window.ballspotStart : null;
  window.ballspotStart = null;  // used once: a screen built again asks afresh
  const last = localStorage.getItem('ballspot.game') || '';
  if (!first || first.error) first = await route('start', `${props.start_url}?last=${encodeURIComponent(last)}`);
  if (!first) return;
  showGames(first.games, first.game ? first.game.game.id : '');
  if (first.game) await openGame(first.game.game.id, first.game);
}

// The picker's counts (labels, reviewed) follow every edit, here or elsewhere: refreshed a
// moment after the last one, so a burst of keys costs one request.
let pickerTimer = null;
function refreshPicker() { clearTimeout(pickerTimer); pickerTimer = setTimeout(loadGames, 300); }

// Opens a game: ``data`` is its answer where the caller has it already (the first screen).
async function openGame(id, data) {
  status('Opening…');
  const t0 = performance.now();
  const seq = ++S.openSeq;
  if (!data) data = await route('game', props.game_url.replace('{game_id}', String(Number(id))));
  if (seq !== S.openSeq || !data) return;  // another game was chosen meanwhile
  if (data.error) { status(data.error, 'error'); return; }
  S.game = data.game; S.fps = data.game.fps; S.frames = data.game.frames; S.version = data.version;
  S.classes = data.classes; S.colours = data.colours; S.teams = data.teams; S.cursorId = data.cursor;
  S.events = new Map(data.events.map((e) => [e.id, e]));
  rowCache.forEach((held) => held.el.remove()); rowCache.clear();  // another game: other classes, teams
  S.selected = null; S.curve = null; S.curveLabel = null; S.visited = new Set(); S.reviewed = data.reviewed;
  S.watched = null; S.playedSince = false;
  if (!$('queue-panel').hidden) loadQueue();
  localStorage.setItem('ballspot.game', String(id));
  if ($('game-select').value !== String(id)) $('game-select').value = String(id);
  $('game-select').title = data.game.name;
  $('model-version').textContent = data.version ? `model ${data.version}` : 'no model yet';
  showReviewCut(data.review_cut, data.version);
  fillFilters(); showReviewed(); closeZoom();
  if (data.game.video) {
    $('no-video').hidden = true;
    video.src = data.video_url;
  } else {
    video.pause(); video.removeAttribute('src'); video.load(); $('no-video').hidden = false;
  }
  $('scrub').max = String(Math.max(0, S.frames - 1));
  S.frame = 0; S.view = [0, S.frames];
  refreshList(); drawTimeline(); showFrame();
  $('filmstrip').replaceChildren(hint('Select an event to see the frames around it; click a frame to enlarge it.'));
  element.dataset.ready = '1';
  element.dataset.openMs = String(Math.round(performance.now() - t0));
  if (!element.dataset.readyMs) element.dataset.readyMs = String(Math.round(performance.now()));
  status(`${data.game.name}: ${S.events.size} events (${element.dataset.openMs} ms)`);
}
// The model's review cut (core.effort.best_cut, measured on its validation games): a toggle
// that hides the pending predictions under it (labels, accepted and rejected ones stay). On,
// it follows the model: a newer version's cut applies at once, a version without one turns it
// off.
function showReviewCut(cut, version) {
  const b = $('review-cut');
  S.cut = typeof cut === 'number' ? cut : null;
  if (S.cut === null) S.cutOn = false;
  b.hidden = S.cut === null;
  if (b.hidden) return;
  b.textContent = `cut ≥ ${S.cut.toFixed(2)}`;
  b.classList.toggle('on', S.cutOn);
  b.setAttribute('aria-pressed', S.cutOn ? 'true' : 'false');
  b.title = (S.cutOn ? `Showing ${version}'s pending predictions from ${S.cut.toFixed(2)} up; click to show all. `
    : `Show only ${version}'s pending predictions from ${S.cut.toFixed(2)} up. `) +
    'On its validation games, reviewing cost least from there (fewer false alarms to reject, a few more ' +
    'events to add while watching). Those under it stay pending: turn the cut off to reject them in bulk.';
}
$('review-cut').addEventListener('click', () => {
  S.cutOn = !S.cutOn;
  showReviewCut(S.cut, S.version);
  refreshList(); drawTimeline();
});
function hint(text) { const s = document.createElement('span'); s.className = 'bs-dim'; s.textContent = text; return s; }

function fillFilters() {
  const fc = $('filter-class');
  if (fc.options.length <= 1) {
    S.classes.forEach((c, i) => { const o = document.createElement('option'); o.value = c; o.textContent = `${KEYS[i]}  ${c}`; fc.append(o); });
    $('class-keys').replaceChildren(...S.classes.map((c, i) => {
      const s = document.createElement('span'); s.className = 'bs-key';
      s.style.borderColor = S.colours[i]; s.textContent = `${KEYS[i]} ${c}`; return s;
    }));
    // Beside the lanes: each class's key and its whole name, in its colour (the legend is always there).
    const names = $('lane-names');
    names.replaceChildren(...S.classes.map((c, i) => {
      const d = document.createElement('div'); d.className = 'bs-lane-name';
      d.style.height = `${LANE_H}px`; d.style.borderLeftColor = S.colours[i];
      const k = document.createElement('b'); k.textContent = KEYS[i];
      d.append(k, document.createTextNode(` ${c}`)); d.title = `${KEYS[i]}: add ${c} at the current frame`;
      return d;
    }));
  }
  const ft = $('filter-team');
  ft.replaceChildren(new Option('both teams', ''), ...S.teams.map((t) => new Option(t, t)));
  const tt = $('team-toggle');
  tt.querySelectorAll('button').forEach((b, i) => { b.dataset.team = S.teams[i]; b.textContent = S.teams[i]; });
  setTeam(S.teams.includes(S.team) ? S.team : S.teams[0]);
}
function setTeam(team) {
  S.team = team;
  $('team-toggle').querySelectorAll('button').forEach((b) => b.classList.toggle('on', b.dataset.team === team));
}
function showReviewed() {
  const b = $('reviewed-button'), on = Boolean(S.reviewed);
  b.classList.toggle('on', on);
  b.textContent = on ? '✓ fully reviewed' : 'mark fully reviewed';
  // The mark is "<UTC timestamp> <author>" (core.store.Store.set_fully_reviewed).
  const [stamp, ...who] = on ? S.reviewed.split(' ') : [];
  b.title = on ? `Marked fully reviewed${who.length ? ` by ${who.join(' ')}` : ''} at ${new Date(stamp).toLocaleString()}; ` +
    'click (Shift+F) to take the mark back' : 'Mark this game fully reviewed: every event in it is labelled (Shift+F)';
  b.dataset.reviewed = on ? '1' : '0';
}
function toggleReviewed() {
  if (!S.game) return;
  send({ op: 'reviewed', marked: !S.reviewed, seen: S.reviewed });
}

// ------------------------------------------------------------------ filters, list
function filters() {
  return {
    cls: $('filter-class').value, team: $('filter-team').value, source: $('filter-source').value,
    status: $('filter-status').value, min: Number($('filter-min').value || 0), max: Number($('filter-max').value || 1),
    cut: S.cutOn ? S.cut : null,
  };
}
function passes(e, f) {
  if (f.cls && e.label !== f.cls) return false;
  if (f.team && e.team !== f.team) return false;
  if (f.source === 'label' && e.kind !== 'label') return false;
  if (f.source === 'model' && e.kind !== 'prediction') return false;
  if ((f.source === 'human' || f.source === 'imported') && (e.kind !== 'label' || e.source !== f.source)) return false;
  if (f.status && e.status !== f.status) return false;
  if (e.confidence !== null && (e.confidence < f.min || e.confidence > f.max)) return false;
  if (f.cut !== null && e.kind === 'prediction' && e.status === 'pending' && e.confidence < f.cut) return false;
  return true;
}
function refreshList() {
  const f = filters();
  const [key, dir] = S.sort;
  S.list = [...S.events.values()].filter((e) => passes(e, f));
  S.list.sort((a, b) => {
    const x = a[key] ?? -1, y = b[key] ?? -1;
    return (x < y ? -dir : x > y ? dir : 0) || a.frame - b.frame || (a.id < b.id ? -1 : 1);
  });
  $('event-count').textContent = `${S.list.length} of ${S.events.size} events shown`;
  eventsEl.querySelector('.bs-events-spacer').style.height = `${S.list.length * S.rowH}px`;
  renderRows(); showBulk();
}
// Only the rows in view exist. A row whose event and selection are unchanged is kept (moved if
// its place changed): an edit rebuilds the one row it changed, not the whole screenful.
const rowCache = new Map();  // event id -> {e, sel, el}
function renderRows() {
  const top = eventsEl.scrollTop, h = eventsEl.clientHeight || 400;
  const first = Math.max(0, Math.floor(top / S.rowH) - 5), last = Math.min(S.list.length, Math.ceil((top + h) / S.rowH) + 5);
  const keep = new Set();
  const frag = document.createDocumentFragment();
  for (let i = first; i < last; i++) {
    const e = S.list[i], sel = e.id === S.selected, held = rowCache.get(e.id);
    keep.add(e.id);
    if (held && held.e === e && held.sel === sel) {
      const y = `${i * S.rowH}px`;
      if (held.el.style.top !== y) held.el.style.top = y;
      continue;
    }
    if (held) held.el.remove();
    const el = row(e, i);
    rowCache.set(e.id, { e, sel, el });
    frag.append(el);
  }
  for (const [id, held] of rowCache) if (!keep.has(id)) { held.el.remove(); rowCache.delete(id); }
  eventsEl.append(frag);
}
function row(e, i) {
  const r = document.createElement('div');
  const hidden = e.visibility === 'not shown';
  r.className = `bs-row ${e.kind} st-${e.status}` + (e.id === S.selected ? ' selected' : '') + (hidden ? ' vis-not-shown' : '');
  r.style.top = `${i * S.rowH}px`;
  Object.assign(r.dataset, { id: e.id, frame: e.frame, label: e.label, status: e.status, visibility: e.visibility || '' });
  const t = document.createElement('span'); t.textContent = clock(e.frame); t.title = `frame ${e.frame}`;
  const c = document.createElement('select');
  S.classes.forEach((name) => c.append(new Option(name, name, false, name === e.label)));
  c.style.borderLeftColor = S.colours[S.classes.indexOf(e.label)];
  c.title = e.label;
  c.addEventListener('change', () => send({ op: 'relabel', id: e.id, label: c.value, revision: e.revision }));
  const tm = document.createElement('button'); tm.type = 'button'; tm.textContent = e.team; tm.title = 'flip team (t)';
  tm.addEventListener('click', (ev) => { ev.stopPropagation(); send({ op: 'team', id: e.id, revision: e.revision }); });
  let vis;
  if (e.kind === 'label') {
    vis = document.createElement('button'); vis.type = 'button'; vis.className = 'bs-vis';
    vis.textContent = hidden ? '◌' : '◉';
    vis.title = hidden ? 'not shown: the action happened off camera (v: visible)' : 'visible (v: not shown)';
    vis.addEventListener('click', (ev) => { ev.stopPropagation(); send({ op: 'visibility', id: e.id, revision: e.revision }); });
  } else { vis = document.createElement('span'); vis.title = 'a prediction: accept it to mark its visibility'; }
  const src = document.createElement('span');
  src.textContent = e.model ? `${e.model} ${e.status}` : e.source;  // a prediction, or the label an accept made
  const conf = document.createElement('span'); conf.textContent = e.confidence === null ? '' : e.confidence.toFixed(2);
  const act = document.createElement('span');
  const mk = (text, title, payload) => {
    const b = document.createElement('button'); b.type = 'button'; b.textContent = text; b.title = title;
    b.addEventListener('click', (ev) => { ev.stopPropagation(); send(payload); }); return b;
  };
  if (e.kind === 'prediction') act.append(mk('acc', 'accept (a)', { op: 'accept', id: e.id, revision: e.revision }),
    mk('rej', 'reject (r)', { op: 'reject', id: e.id, revision: e.revision }));
  else act.append(mk('del', 'delete (Del)', { op: 'delete', id: e.id, revision: e.revision }));
  r.append(t, c, tm, vis, src, conf, act);
  r.addEventListener('click', () => select(e.id, true));
  return r;
}
eventsEl.addEventListener('scroll', () => requestAnimationFrame(renderRows));
element.querySelectorAll('.bs-filters select, .bs-filters input').forEach((el) => el.addEventListener('change', () => {
  refreshList(); drawTimeline();
}));
element.querySelectorAll('.bs-events-head [data-sort]').forEach((h) => h.addEventListener('click', () => {
  S.sort = [h.dataset.sort, S.sort[0] === h.dataset.sort ? -S.sort[1] : 1]; refreshList();
}));

// ------------------------------------------------------------------ bulk review of what the filters show
function threshold(id) {
  const v = Number($(id).value);
  return Number.isFinite(v) && v >= 0 && v <= 1 ? v : null;
}
function bulkTargets(decision) {
  const t = threshold(decision === 'accept' ? 'bulk-accept-at' : 'bulk-reject-at');
  if (t === null) return { t, list: [] };
  const list = S.list.filter((e) => e.kind === 'prediction' && e.status === 'pending' &&
    (decision === 'accept' ? e.confidence >= t : e.confidence <= t));
  return { t, list };
}
function showBulk() {
  for (const decision of ['accept', 'reject']) {
    const { list } = bulkTargets(decision);
    const b = $(`bulk-${decision}`);
    b.textContent = `${decision} ${list.length}`;
    b.dataset.count = String(list.length);
    b.disabled = list.length === 0;
  }
}
function bulk(decision) {
  const { t, list } = bulkTargets(decision);
  if (t === null) { status('the threshold is a confidence from 0 to 1', 'error'); return; }
  if (!list.length) { status(`no pending prediction ${decision === 'accept' ? 'at or above' : 'at or below'} ${t.toFixed(2)} is shown`, 'error'); return; }
  send({ op: 'bulk', decision, threshold: t, events: list.map((e) => ({ id: e.id, revision: e.revision })) });
}
$('bulk-accept').addEventListener('click', () => bulk('accept'));
$('bulk-reject').addEventListener('click', () => bulk('reject'));
['bulk-accept-at', 'bulk-reject-at'].forEach((id) => $(id).addEventListener('input', showBulk));

// ------------------------------------------------------------------ selection, seeking
function select(id, seek) {
  const before = S.selected;
  S.selected = id;
  S.playedSince = false;
  const e = S.events.get(id);
  renderRows(); updateMarkers([before, id]);
  if (!e) {
    filmShown = '';
    $('filmstrip').replaceChildren(hint('Select an event to see the frames around it; click a frame to enlarge it.'));
    return;
  }
  if (seek) seekFrame(e.frame);
  const idx = S.list.indexOf(e);
  if (idx >= 0) {
    const top = idx * S.rowH;
    if (top < eventsEl.scrollTop || top > eventsEl.scrollTop + eventsEl.clientHeight - S.rowH)
      eventsEl.scrollTop = top - eventsEl.clientHeight / 2;
  }
  if (e.label !== S.curveLabel) loadCurve(e.label);
  loadFilmstrip(e);
}
function seekFrame(frame) {
  frame = Math.max(0, Math.min(S.frames - 1, Math.round(frame)));
  leaveStretch(frame);
  S.frame = frame;
  if (video.readyState > 0) video.currentTime = (frame + 0.5) / S.fps;  // inside the frame, not on its edge
  const [a, b] = S.view;
  if (frame < a || frame > b) { const span = b - a; S.view = clampView(frame - span / 2, frame + span / 2); drawTimeline(); }
  showFrame();
}
let scrubbing = false;
function showFrame() {
  $('frame-number').textContent = String(S.frame);
  $('game-clock').textContent = clock(S.frame);
  if (!scrubbing) $('scrub').value = String(S.frame);
  const [a, b] = S.view, w = S.laneW || 800;
  $('cursor').style.transform = `translateX(${((S.frame - a) / (b - a)) * w}px)`;
  showWatched();
  element.dataset.frame = String(S.frame);
}
function onFrame(_now, meta) {
  if (!video.paused) {
    playedTo(Math.round(meta.mediaTime * S.fps));
    const [a, b] = S.view;
    if (S.frame > b) { S.view = clampView(S.frame - (b - a) * 0.1, S.frame + (b - a) * 0.9); drawTimeline(); }
    showFrame();
  }
  video.requestVideoFrameCallback(onFrame);
}
if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(onFrame);
else video.addEventListener('timeupdate', () => {
  if (video.paused) return;
  playedTo(Math.floor(video.currentTime * S.fps));
  showFrame();
});
video.addEventListener('play', () => { $('play-button').textContent = 'pause'; beginStretch(); });
// The watched stretch holds only frames that were played: playing on from inside it extends
// it; playing from anywhere else (after a seek past it or back before it) starts a new one,
// and so does a seek made while the video plays, or a jump in what plays (never a skip).
const STRETCH_GAP = 50;  // frames: more between two shown frames is a jump, not playback
function beginStretch() {  // also called before play(): its 'play' event comes after frames may show
  S.playedSince = true;
  const w = S.watched;
  if (!w || S.frame < w.from || S.frame > w.to + 1) S.watched = { from: S.frame, to: S.frame };
  showWatched();
}
function leaveStretch(frame) {  // a seek: while playing, what comes next is another stretch
  const w = S.watched;
  if (!video.paused && w && (frame < w.from || frame > w.to + 1)) S.watched = { from: frame, to: frame };
}
function playedTo(frame) {
  S.frame = Math.min(S.frames - 1, frame);
  const w = S.watched;
  if (!w) return;
  if (S.frame < w.from || S.frame > w.to + STRETCH_GAP) S.watched = { from: S.frame, to: S.frame };
  else w.to = Math.max(w.to, S.frame);
}
video.addEventListener('seeking', () => leaveStretch(Math.min(S.frames - 1, Math.floor(video.currentTime * S.fps))));
video.addEventListener('pause', () => {
  $('play-button').textContent = 'play';
  S.frame = Math.min(S.frames - 1, Math.floor(video.currentTime * S.fps)); showFrame();
});
video.addEventListener('error', () => { $('video-state').textContent = 'video cannot be played'; });
video.addEventListener('loadeddata', () => { $('video-state').textContent = ''; seekFrame(S.frame); });
function showWatched() {
  const band = $('watched'), w = S.watched, [a, b] = S.view, lw = S.laneW || 800;
  band.hidden = !w || w.to <= w.from;
  band.dataset.from = w ? String(w.from) : ''; band.dataset.to = w ? String(w.to) : '';
  if (band.hidden) return;
  const x0 = Math.max(0, ((w.from - a) / (b - a)) * lw), x1 = Math.min(lw, ((w.to - a) / (b - a)) * lw);
  band.style.transform = `translateX(${x0}px)`;
  band.style.width = `${Math.max(0, x1 - x0)}px`;
}
// Shift+A: accept, as one edit, the pending predictions shown (the filters and the cut as they
// are now) in the stretch played since the last Shift+A: the analyst watches through, stops
// only where a marker looks wrong, fixes it, and lets the rest pass. The server checks each is
// still pending as seen. Only once it is saved does the next stretch start: a conflict or a
// lost reply keeps the band, to be accepted again.
function acceptWatched() {
  const w = S.watched;
  if (!w || w.to <= w.from) { status('play the video first: Shift+A accepts the pending predictions played since the last Shift+A', 'error'); return; }
  if (w.sending) { status('accepting the watched stretch…', 'saving'); return; }
  const upTo = w.to;
  const list = S.list.filter((e) => e.kind === 'prediction' && e.status === 'pending' && e.frame >= w.from && e.frame <= upTo);
  const next = () => { if (S.watched === w) { S.watched = { from: upTo, to: Math.max(upTo, w.to) }; showWatched(); } };
  if (!list.length) { status(`no pending prediction shown in ${clock(w.from)}–${clock(upTo)}`); next(); return; }
  w.sending = true;
  send({ op: 'bulk', decision: 'accept', span: [w.from, upTo], events: list.map((e) => ({ id: e.id, revision: e.revision })) })
    .then((ok) => { if (ok) next(); }).catch(() => {}).finally(() => { w.sending = false; });
}
function togglePlay() { if (video.paused) { beginStretch(); video.play(); } else video.pause(); }
function step(n) { video.pause(); seekFrame(S.frame + n); }
$('speed').addEventListener('change', () => { video.playbackRate = Number($('speed').value); });
element.querySelectorAll('.bs-controls [data-act]').forEach((b) => b.addEventListener('click', () => {
  ({ play: togglePlay, 'back-frame': () => step(-1), 'next-frame': () => step(1),
     'back-second': () => step(-S.fps), 'next-second': () => step(S.fps) })[b.dataset.act]();
}));
// The scrub bar under the player: the whole match, frame by frame.
$('scrub').addEventListener('input', () => { scrubbing = true; video.pause(); seekFrame(Number($('scrub').value)); });
$('scrub').addEventListener('change', () => { scrubbing = false; showFrame(); });
// Go to a frame number or a clock time.
$('frame-input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') { $('frame-input').blur(); return; }
  if (ev.key !== 'Enter') return;
  ev.preventDefault();
  const frame = parseFrame($('frame-input').value);
  if (frame === null || frame >= S.frames) {
    $('frame-input').classList.add('invalid');
    status(`go to: "${$('frame-input').value}" is not a frame (0 to ${S.frames - 1}) or a time MM:SS(.ff) in the match`, 'error');
    return;
  }
  $('frame-input').classList.remove('invalid');
  video.pause(); seekFrame(frame);
  $('frame-input').blur();
  status(`at frame ${frame} (${clock(frame)})`);
});

// ------------------------------------------------------------------ timeline
function clampView(a, b) {
  const span = Math.max(S.fps * 4, Math.min(S.frames, b - a));
  a = Math.max(0, Math.min(S.frames - span, a));
  return [a, a + span];
}
function lanesHeight() { return S.classes.length * LANE_H + SCORE_H + AXIS_H; }
function drawTimeline() {
  S.laneW = lanesEl.clientWidth || 800;  // read once here (a layout): markers drawn after an edit reuse it
  const w = S.laneW, h = lanesHeight(), dpr = window.devicePixelRatio || 1;
  lanesEl.style.height = `${h}px`;
  canvas.width = w * dpr; canvas.height = h * dpr; canvas.style.width = `${w}px`; canvas.style.height = `${h}px`;
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const [a, b] = S.view, x = (f) => ((f - a) / (b - a)) * w;
  S.classes.forEach((c, i) => {  // lane bands; the names are beside the lanes (#lane-names), never cut
    g.fillStyle = i % 2 ? 'rgba(127,127,127,0.06)' : 'rgba(127,127,127,0.12)';
    g.fillRect(0, i * LANE_H, w, LANE_H);
  });
  // score lane: the model's confidence for one class, max over each pixel column
  const sy = S.classes.length * LANE_H;
  g.fillStyle = 'rgba(127,127,127,0.08)'; g.fillRect(0, sy, w, SCORE_H);
  const scoreName = $('score-name');
  if (S.curve) {
    const ci = S.classes.indexOf(S.curveLabel);
    g.strokeStyle = S.colours[ci]; g.beginPath();
    for (let px = 0; px < w; px++) {
      const f0 = Math.floor(a + (px / w) * (b - a)), f1 = Math.max(f0 + 1, Math.floor(a + ((px + 1) / w) * (b - a)));
      let m = 0;
      for (let f = f0; f < f1 && f < S.curve.length; f++) if (S.curve[f] > m) m = S.curve[f];
      const y = sy + SCORE_H - 2 - (m / 255) * (SCORE_H - 4);
      px ? g.lineTo(px, y) : g.moveTo(px, y);
    }
    g.stroke();
    if (scoreName) { scoreName.textContent = `score: ${S.curveLabel}`; scoreName.style.color = S.colours[ci]; }
  } else if (scoreName) {
    scoreName.textContent = S.version ? 'score: select an event or a class' : 'score: no model scores';
    scoreName.style.color = '';
  }
  // the score lane's scale: 0, 0.5 and 1 at the right edge, a faint line at 0.5
  g.fillStyle = 'rgba(127,127,127,0.35)'; g.fillRect(0, sy + SCORE_H / 2, w, 1);
  g.fillStyle = '#888'; g.font = '9px sans-serif'; g.textAlign = 'right';
  g.fillText('1', w - 3, sy + 9); g.fillText('.5', w - 3, sy + SCORE_H / 2 + 3); g.fillText('0', w - 3, sy + SCORE_H - 2);
  g.textAlign = 'left';
  // axis
  const ay = sy + SCORE_H, span = (b - a) / S.fps;
  const stepS = [0.2, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900].find((s) => span / s <= 12) || 1800;
  g.fillStyle = '#888'; g.font = '10px sans-serif';
  if (b - a <= S.fps * 10) {  // close up: a tick per frame, so a frame can be placed by eye
    g.fillStyle = 'rgba(127,127,127,0.6)';
    for (let f = Math.ceil(a); f <= b; f++) g.fillRect(x(f), ay, 1, 2);
    g.fillStyle = '#888';
  }
  for (let s = Math.ceil(a / S.fps / stepS) * stepS; s * S.fps <= b; s += stepS) {
    const px = x(s * S.fps); g.fillRect(px, ay, 1, 4); g.fillText(clock(Math.round(s * S.fps)).replace(/\.00$/, ''), px + 2, ay + 12);
  }
  $('timeline-span').textContent = `${clock(Math.round(a)).slice(0, 5)}–${clock(Math.round(b)).slice(0, 5)}`;
  $('timeline-span').title = `${clock(Math.round(a))} – ${clock(Math.round(b))} shown`;
  drawMarkers(); showFrame();
}
// Zoomed in, one element per event in view, kept by id: an edit or a selection replaces only
// the markers of the events it changed, and each has its own hover and focus. Where more events
// are in view than a screen can show apart (a full match at full zoom: several a pixel), they
// are painted on a canvas instead, thousands in one pass, so opening, panning and zooming a full
// match never build thousands of elements; a click or a hover finds the event under the pointer.
const DENSE = 600;
const markerEls = new Map();
const markCanvas = $('markers-canvas');
let dense = [];  // the events painted on the canvas (empty: markers are elements)
function markerY(e) {  // the top of an event's marker: a team's side of its class lane
  const lane = S.classes.indexOf(e.label), above = S.teams.indexOf(e.team) !== 1;
  return lane * LANE_H + (above ? -1 : LANE_H - MARK + 1);
}
function marker(e, w, a, b) {
  const m = document.createElement('div');
  const lane = S.classes.indexOf(e.label);
  const side = S.teams.indexOf(e.team) === 1 ? 'below' : 'above';
  m.className = `bs-marker ${e.kind} st-${e.status} ${side}` + (e.id === S.selected ? ' selected' : '') +
    (e.visibility === 'not shown' ? ' vis-not-shown' : '');
  m.style.left = `${((e.frame - a) / (b - a)) * w}px`;
  m.style.top = `${markerY(e)}px`;
  m.style.setProperty('--c', S.colours[lane]);
  Object.assign(m.dataset, { id: e.id, frame: e.frame, label: e.label, status: e.status });
  return m;
}
// The canvas draws what the elements' CSS draws: labels filled, predictions rings (accepted
// filled with a white ring, rejected faded and dotted), half filled when not shown on camera.
// Labels over predictions, the selection on top.
const paintOrder = (e) => (e.id === S.selected ? 2 : e.kind === 'label' ? 1 : 0);
const markerX = (e, w, a, b) => ((e.frame - a) / (b - a)) * w;
function paintMarker(g, e, x) {
  const r = MARK / 2, y = markerY(e) + r, c = S.colours[S.classes.indexOf(e.label)];
  g.globalAlpha = e.status === 'rejected' ? 0.35 : 1;
  g.setLineDash(e.status === 'rejected' ? [1.5, 1.5] : []);
  g.beginPath(); g.arc(x, y, r - 1, 0, 2 * Math.PI);
  if (e.kind === 'label' || e.status === 'accepted') {
    g.fillStyle = c;
    if (e.visibility === 'not shown') { g.save(); g.clip(); g.fillRect(x - r, y - r, r, 2 * r); g.restore(); } else g.fill();
    g.strokeStyle = e.kind === 'label' ? c : '#fff'; g.lineWidth = 1; g.stroke();
  } else { g.strokeStyle = c; g.lineWidth = 2; g.stroke(); }
  if (e.id === S.selected) {
    g.beginPath(); g.arc(x, y, r + 2, 0, 2 * Math.PI); g.strokeStyle = '#e15759'; g.lineWidth = 3; g.stroke();
  }
  g.globalAlpha = 1; g.setLineDash([]);
}
const painted = new Map();  // event id -> x of its marker on the canvas
let paintedFor = '';  // the view and size the canvas was painted for
const canvasKey = (w, a, b) => `${w} ${a} ${b} ${window.devicePixelRatio || 1} ${lanesHeight()}`;
function paintMarkers(events, w, a, b) {
  const dpr = window.devicePixelRatio || 1, h = lanesHeight();
  markCanvas.width = w * dpr; markCanvas.height = h * dpr;
  markCanvas.style.width = `${w}px`; markCanvas.style.height = `${h}px`;
  const g = markCanvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  painted.clear();
  paintedFor = canvasKey(w, a, b);
  for (const e of [...events].sort((p, q) => paintOrder(p) - paintOrder(q))) {
    const x = markerX(e, w, a, b);
    paintMarker(g, e, x);
    painted.set(e.id, x);
  }
}
// An edit changes a marker or two among thousands: only the columns where they were and are
// now are cleared and repainted (every marker reaching into them, in paint order): a canvas
// painted whole is rasterised whole again by the browser, the largest part of an edit's time
// on a full match (bench/ui.py).
const REACH = MARK / 2 + 5;  // a marker's half width with its selection ring (radius + 2, line 3) and smoothing
function repaintColumns(ids) {
  const w = S.laneW || 800, [a, b] = S.view, f = filters();
  const xs = [];
  for (const id of new Set(ids)) {
    if (!id) continue;
    if (painted.has(id)) xs.push(painted.get(id));
    const e = S.events.get(id);
    if (shownOnTimeline(e, a, b, f)) xs.push(markerX(e, w, a, b));
  }
  const shown = [];
  for (const e of S.events.values()) if (shownOnTimeline(e, a, b, f)) shown.push(e);
  if (shown.length <= DENSE || paintedFor !== canvasKey(w, a, b)) {
    drawMarkers(); return;  // back to elements, or the canvas no longer fits the lanes
  }
  dense = shown;
  markersEl.dataset.count = String(shown.length);
  if (!xs.length) return;
  const g = markCanvas.getContext('2d'), dpr = window.devicePixelRatio || 1;
  g.save();
  g.setTransform(1, 0, 0, 1, 0, 0);  // columns on whole device pixels: no blended seams at their edges
  g.beginPath();
  for (const x of xs) {
    const x0 = Math.floor((x - REACH) * dpr), x1 = Math.ceil((x + REACH) * dpr);
    g.rect(x0, 0, x1 - x0, markCanvas.height);
  }
  g.clip();
  g.clearRect(0, 0, markCanvas.width, markCanvas.height);
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  // Every marker that reaches into a column (widened to whole pixels, and by one for smoothing).
  const near = shown.filter((e) => { const x = markerX(e, w, a, b); return xs.some((c) => Math.abs(x - c) <= 2 * REACH + 2); });
  for (const id of new Set(ids)) painted.delete(id);
  for (const e of near.sort((p, q) => paintOrder(p) - paintOrder(q))) {
    const x = markerX(e, w, a, b);
    paintMarker(g, e, x);
    painted.set(e.id, x);
  }
  g.restore();
}
function shownOnTimeline(e, a, b, f) { return e && e.frame >= a && e.frame <= b && passes(e, f); }
function drawMarkers() {
  const w = S.laneW || 800, [a, b] = S.view, f = filters();
  const shown = [];
  for (const e of S.events.values()) if (shownOnTimeline(e, a, b, f)) shown.push(e);
  markerEls.clear();
  dense = shown.length > DENSE ? shown : [];
  markersEl.dataset.mode = dense.length ? 'canvas' : 'elements';
  markersEl.dataset.count = String(shown.length);
  markCanvas.hidden = !dense.length;
  if (dense.length) { markersEl.replaceChildren(); paintMarkers(dense, w, a, b); return; }
  painted.clear();
  const frag = document.createDocumentFragment();
  for (const e of shown) { const m = marker(e, w, a, b); markerEls.set(e.id, m); frag.append(m); }
  markersEl.replaceChildren(frag);
}
function updateMarkers(ids) {
  if (dense.length) { repaintColumns(ids); return; }
  const w = S.laneW || 800, [a, b] = S.view, f = filters();
  for (const id of new Set(ids)) {
    if (!id) continue;
    const old = markerEls.get(id);
    const e = S.events.get(id);
    if (!shownOnTimeline(e, a, b, f)) { if (old) { old.remove(); markerEls.delete(id); } continue; }
    const m = marker(e, w, a, b);
    if (old) old.replaceWith(m); else markersEl.append(m);
    markerEls.set(id, m);
  }
  if (markerEls.size > DENSE) drawMarkers();
}
// The event under the pointer: its marker element, or on the canvas the nearest painted marker
// within its radius (a label before a prediction at the same spot, as it is drawn on top).
function eventAt(ev) {
  const m = ev.target.closest && ev.target.closest('.bs-marker');
  if (m) return m.dataset.id;
  if (!dense.length) return null;
  const rect = lanesEl.getBoundingClientRect(), px = ev.clientX - rect.left, py = ev.clientY - rect.top;
  const w = S.laneW || 800, [a, b] = S.view, r = MARK / 2;
  let best = null, bestD = Infinity;
  for (const e of dense) {
    const dx = ((e.frame - a) / (b - a)) * w - px, dy = markerY(e) + r - py;
    const d = dx * dx + dy * dy - (e.kind === 'label' ? 0.5 : 0);
    if (Math.abs(dx) <= r && Math.abs(dy) <= r && d < bestD) { best = e.id; bestD = d; }
  }
  return best;
}
function describe(e) {
  return `${e.label} ${e.team} ${clock(e.frame)} (frame ${e.frame}) ` +
    (e.model ? `${e.confidence.toFixed(2)} ${e.model} ${e.status}` : e.source) + (e.visibility === 'not shown' ? ' · not shown' : '');
}
markersEl.addEventListener('click', (ev) => {
  const id = eventAt(ev);
  if (id) { ev.stopPropagation(); select(id, true); }
});
markersEl.addEventListener('mouseover', (ev) => {  // the tooltip is written when pointed at, not for 4,000 markers
  const m = ev.target.closest('.bs-marker'), e = m && S.events.get(m.dataset.id);
  if (e && !m.title) m.title = describe(e);
});
markersEl.addEventListener('mousemove', (ev) => {  // on the canvas: the tooltip of the event pointed at
  if (!dense.length || drag) return;
  const e = S.events.get(eventAt(ev));
  if (e) { markersEl.title = describe(e); markersEl.style.cursor = 'pointer'; }
  else { markersEl.removeAttribute('title'); markersEl.style.cursor = ''; }
});
let drag = null;
lanesEl.addEventListener('mousedown', (ev) => { drag = { x: ev.clientX, view: S.view.slice(), moved: false }; });
window.addEventListener('mousemove', (ev) => {
  if (!drag) return;
  const dx = ev.clientX - drag.x;
  if (Math.abs(dx) > 3) drag.moved = true;
  if (drag.moved) {
    const per = (drag.view[1] - drag.view[0]) / lanesEl.clientWidth;
    S.view = clampView(drag.view[0] - dx * per, drag.view[1] - dx * per); drawTimeline();
  }
});
window.addEventListener('mouseup', (ev) => {
  if (drag && !drag.moved && !eventAt(ev) && lanesEl.contains(ev.target)) {
    const r = lanesEl.getBoundingClientRect(), [a, b] = S.view;
    video.pause(); seekFrame(a + ((ev.clientX - r.left) / r.width) * (b - a));
  }
  drag = null;
});
lanesEl.addEventListener('wheel', (ev) => {
  ev.preventDefault();
  const r = lanesEl.getBoundingClientRect(), [a, b] = S.view, at = a + ((ev.clientX - r.left) / r.width) * (b - a);
  if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
    const d = (ev.deltaX || ev.deltaY) * (b - a) / r.width; S.view = clampView(a + d, b + d);
  } else zoom(ev.deltaY > 0 ? 1.25 : 0.8, at);
  drawTimeline();
}, { passive: false });
function zoom(k, at) {
  const [a, b] = S.view; at = at ?? S.frame;
  const seen = S.frame >= a && S.frame <= b;
  S.view = clampView(at - (at - a) * k, at + (b - at) * k);
  const [c, d] = S.view;
  if (seen && (S.frame < c || S.frame > d)) {  // zooming never loses the playhead it showed
    const half = (d - c) / 2;
    S.view = clampView(S.frame - half, S.frame + half);
  }
}
element.querySelectorAll('[data-zoom]').forEach((btn) => btn.addEventListener('click', () => {
  const z = btn.dataset.zoom;
  if (z === 'all') S.view = [0, S.frames]; else zoom(z === 'in' ? 0.5 : 2);
  drawTimeline();
}));
new ResizeObserver(() => drawTimeline()).observe(lanesEl);

async function loadCurve(label) {
  S.curveLabel = label;
  const seq = S.openSeq;
  const b64 = S.game ? await call('score_curve', { game: S.game.id, label }) : null;
  if (seq !== S.openSeq || label !== S.curveLabel) return;
  S.curve = b64 ? Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0)) : null;
  drawTimeline();
}
$('filter-class').addEventListener('change', () => { if ($('filter-class').value) loadCurve($('filter-class').value); });

// ------------------------------------------------------------------ filmstrip
// Nine server-decoded frames around the selected event, under the player across the screen.
// A click enlarges one over the player (decoded larger); from there Enter moves the event to it.
let filmTimer = null, filmShown = '';
function loadFilmstrip(e, wait = 120) {
  const shows = `${S.openSeq}/${e.id}/${e.frame}`;
  clearTimeout(filmTimer);
  if (shows === filmShown) return;  // already these frames (an edit that did not move the event)
  filmTimer = setTimeout(async () => {
    if (!S.game || !S.game.video || S.selected !== e.id) return;
    const seq = S.openSeq;
    const frames = await call('filmstrip', { game: S.game.id, frame: e.frame });
    if (S.selected !== e.id || seq !== S.openSeq) return;
    filmShown = shows;
    if (frames.error) { $('filmstrip').replaceChildren(hint(frames.error)); return; }
    $('filmstrip').replaceChildren(...frames.map((f) => {
      const fig = document.createElement('figure');
      fig.className = f.offset === 0 ? 'centre' : '';
      fig.dataset.frame = f.frame;
      const img = document.createElement('img'); img.src = f.src; img.alt = `frame ${f.frame}`;
      const cap = document.createElement('figcaption');
      cap.textContent = `${f.offset > 0 ? '+' : ''}${f.offset}  ${f.frame}`;
      fig.append(img, cap);
      fig.title = `Frame ${f.frame} (${f.clock}): click to enlarge`;
      fig.addEventListener('click', () => enlarge(f));
      return fig;
    }));
  }, 120);
}
async function enlarge(f) {
  S.zoomFrame = f.frame;
  $('film-zoom-img').src = f.src;  // the small one at once, the large one when decoded
  $('film-zoom-caption').textContent = `frame ${f.frame} · ${f.clock}`;
  const cur = S.events.get(S.selected);
  $('film-zoom-move').disabled = !cur || cur.frame === f.frame;
  $('film-zoom').hidden = false;
  const seq = S.openSeq;
  const big = await call('frame_image', { game: S.game.id, frame: f.frame });
  if (seq === S.openSeq && S.zoomFrame === f.frame && big && !big.error) $('film-zoom-img').src = big.src;
}
function closeZoom() { $('film-zoom').hidden = true; S.zoomFrame = null; }
function moveToZoomed() {
  const cur = S.events.get(S.selected), frame = S.zoomFrame;
  closeZoom();
  if (cur && frame !== null && frame !== cur.frame) send({ op: 'move', id: cur.id, frame, revision: cur.revision });
}
$('film-zoom-move').addEventListener('click', moveToZoomed);
$('film-zoom-close').addEventListener('click', closeZoom);

// ------------------------------------------------------------------ review queue
S.queue = []; S.visited = new Set();
async function loadQueue() {
  if (!S.game) return [];
  S.queue = (await call('review_queue', { game: S.game.id })) || [];
  const box = $('queue');
  box.replaceChildren(...S.queue.map((it, i) => {
    const r = document.createElement('div');
    r.className = `bs-qitem ${it.kind}` + (S.visited.has(key(it)) ? ' visited' : '');
    Object.assign(r.dataset, { index: i, frame: it.frame, label: it.label, kind: it.kind });
    const head = document.createElement('div');
    head.textContent = `${it.priority.toFixed(2)}  ${it.clock}  ${it.label}${it.team ? ' ' + it.team : ''}` +
      (it.confidence === null ? '' : `  ${it.confidence.toFixed(2)}`) + `  · ${it.kind}`;
    head.style.borderLeftColor = S.colours[S.classes.indexOf(it.label)];
    const why = document.createElement('div'); why.className = 'bs-dim'; why.textContent = it.reasons.join('; ');
    r.append(head, why);
    r.addEventListener('click', () => goItem(it));
    return r;
  }));
  if (!S.queue.length) box.replaceChildren(hint('Nothing to review here.'));
  return S.queue;
}
function key(it) { return `${it.kind}:${it.event_id || ''}:${it.frame}:${it.label}`; }
function goItem(it) {
  S.visited.add(key(it));
  video.pause();
  if (it.label !== S.curveLabel) loadCurve(it.label);
  if (it.event_id && S.events.has(it.event_id)) select(it.event_id, true);
  else { select(null); seekFrame(it.frame); status(`${it.kind} at ${it.clock}: ${it.reasons.join('; ')}`); }
  $('queue').querySelectorAll('.bs-qitem').forEach((r) => {
    const q = S.queue[Number(r.dataset.index)];
    r.classList.toggle('visited', S.visited.has(key(q)));
    r.classList.toggle('current', q === it);
  });
}
async function nextItem() {
  const items = await loadQueue();
  const it = items.find((q) => !S.visited.has(key(q)) && q.event_id !== S.selected);
  if (it) goItem(it); else status('the review queue is done for this game', 'saved');
}
element.querySelectorAll('.bs-tabs button').forEach((b) => b.addEventListener('click', () => {
  element.querySelectorAll('.bs-tabs button').forEach((o) => o.classList.toggle('on', o === b));
  element.querySelectorAll('.bs-panel').forEach((p) => { p.hidden = p.id !== b.dataset.panel; });
  if (b.dataset.panel === 'queue-panel') loadQueue();
}));

// ------------------------------------------------------------------ edits
// Applies a delta; returns the ids of the events it touched (to redraw only their markers).
function applyDelta(d) {
  if (!d) return [];
  for (const id of d.removed) S.events.delete(id);
  for (const e of d.upsert) {
    const held = S.events.get(e.id);
    if (!held || held.revision <= e.revision) S.events.set(e.id, e);  // never roll a row back
  }
  if ('reviewed' in d) { S.reviewed = d.reviewed; showReviewed(); }
  S.cursorId = Math.max(S.cursorId, d.cursor);
  if (S.selected && !S.events.has(S.selected)) S.selected = null;
  return [...d.removed, ...d.upsert.map((e) => e.id)];
}
function madeBy(predictionId) {  // the label that accepting this prediction made, if shown
  for (const e of S.events.values()) if (e.kind === 'label' && e.prediction === predictionId) return e;
  return null;
}
// Edits go one at a time, in key-press order; each names the revision the screen holds when
// it is sent (after the previous edit's reply), so fast repeated keys never conflict with
// themselves, while an edit made in another tab still does. The first one waits for the
// reviewer's name where there are no logins.
let queueTail = Promise.resolve();
const editToken = () => Array.from(crypto.getRandomValues(new Uint8Array(16)),
                                   (b) => b.toString(16).padStart(2, '0')).join('');
function send(action) {
  if (!S.game) return Promise.resolve();
  const game = S.game.id, seq = S.openSeq;
  S.busy++;
  status('saving…', 'saving');
  const job = queueTail.then(ensureReviewer).then(() => sendNow(action, game, seq)).finally(() => { S.busy--; });
  queueTail = job.catch(() => {});
  return job;
}
async function sendNow(action, game, seq) {
  if (seq !== S.openSeq) return;
  const t0 = performance.now();
  const payload = { ...action };
  if (payload.id && S.events.has(payload.id)) payload.revision = S.events.get(payload.id).revision;
  // A correction through an accepted prediction changes the label it made: name the revision
  // of that label as shown here too, so a change made to it elsewhere is not overwritten.
  const made = payload.id && payload.id[0] === 'p' && madeBy(Number(payload.id.slice(1)));
  if (made) payload.made_revision = made.revision;
  // The token names this edit: sent again under it, the server answers what it did with it
  // (core/once.py) instead of doing it twice.
  const body = { game, action: payload, cursor: S.cursorId, author: author(), token: editToken() };
  let res;
  try {
    res = await postEdit(body);
  } catch (err) {
    // No reply: the connection dropped, perhaps after the server had saved the edit. Ask again.
    status('no answer from the server: asking again…', 'saving');
    await new Promise((done) => setTimeout(done, 300));
    try {
      res = await postEdit(body);
    } catch (again) {
      status(`no answer from the server (${again}): this edit may not be saved; ` +
             'what is stored shows here once the server answers', 'error');
      return;
    }
  }
  if (seq !== S.openSeq || !res) return;  // the reply of a game no longer shown, or an error shown
  const t1 = performance.now();
  const before = S.selected;
  const changed = applyDelta(res.delta);
  if (res.select) S.selected = res.select;
  refreshList();
  const t2 = performance.now();
  updateMarkers([...changed, before, S.selected]);
  const t3 = performance.now();
  // Where an edit's time goes (bench/ui.py reads it): the server call, the list, the markers.
  element.dataset.lastEditParts = JSON.stringify({ call: Math.round(t1 - t0), list: Math.round(t2 - t1),
                                                   markers: Math.round(t3 - t2) });
  const sel = S.selected && S.events.get(S.selected);
  if (sel && res.ok) loadFilmstrip(sel, 400);  // decoded once the keys stop, not on every edit of a burst
  const ms = Math.round(performance.now() - t0);
  element.dataset.lastEditMs = String(ms);
  if (res.ok) { status(`saved: ${res.message}${sel ? ` (revision ${sel.revision})` : ''} · ${ms} ms`, 'saved'); refreshPicker(); }
  else {
    if (res.current && 'fully_reviewed' in res.current) { S.reviewed = res.current.fully_reviewed; showReviewed(); }
    status(res.current ? `conflict: ${res.message}` : `not saved: ${res.message}`, res.current ? 'conflict' : 'error');
  }
  return res.ok;  // send()'s promise says whether it was saved
}
setInterval(async () => {  // edits made elsewhere (another tab, the CLI) arrive within seconds
  if (!S.game || S.busy || document.hidden) return;
  const seq = S.openSeq;
  const d = await call('sync', { game: S.game.id, cursor: S.cursorId });
  if (!d || seq !== S.openSeq || S.busy) return;
  if (d.version !== S.version) { openGame(S.game.id); return; }  // another model became active
  if (d.upsert.length || d.removed.length || 'reviewed' in d) { updateMarkers(applyDelta(d)); refreshList(); refreshPicker(); }
  else S.cursorId = Math.max(S.cursorId, d.cursor);
}, 3000);

function visibleList() { return [...S.list].sort((a, b) => a.frame - b.frame || (a.id < b.id ? -1 : 1)); }
function jump(dir) {
  const list = visibleList();
  const cur = S.playedSince ? null : S.events.get(S.selected);  // played on since: from the playhead
  const from = cur ? cur.frame : S.frame;
  let target;
  if (dir > 0) target = list.find((e) => e.frame > from || (cur && e.frame === from && e.id > cur.id && e.id !== cur.id));
  else target = [...list].reverse().find((e) => e.frame < from || (cur && e.frame === from && e.id < cur.id));
  if (target) { video.pause(); select(target.id, true); }
}

document.addEventListener('keydown', (ev) => {
  if (!S.game || !element.isConnected || element.offsetParent === null) return;
  const t = ev.target;  // keys typed into a field are the field's; the scrub bar and buttons leave them to the screen
  if (t && (t.isContentEditable || ['TEXTAREA', 'SELECT'].includes(t.tagName) ||
            (t.tagName === 'INPUT' && !['range', 'checkbox', 'button'].includes(t.type)))) return;
  if (!$('reviewer-prompt').hidden) return;  // the name is being asked for
  const k = ev.key, ctrl = ev.ctrlKey || ev.metaKey;
  const sel = S.selected && S.events.get(S.selected);
  const edit = (payload) => sel ? send({ id: sel.id, revision: sel.revision, ...payload }) : status('select an event first', 'error');
  const zoomed = !$('film-zoom').hidden;
  let done = true;
  if (ctrl && (k === 'z' || k === 'Z')) send({ op: ev.shiftKey ? 'redo' : 'undo' });
  else if (ctrl && (k === 'y' || k === 'Y')) send({ op: 'redo' });
  else if (ctrl || ev.altKey) done = false;
  else if (zoomed && k === 'Enter') moveToZoomed();
  else if (zoomed && k === 'Escape') closeZoom();
  else if (k === ' ') togglePlay();
  else if (k === 'ArrowLeft') step(ev.shiftKey ? -S.fps : -1);
  else if (k === 'ArrowRight') step(ev.shiftKey ? S.fps : 1);
  else if (k === 'n') jump(1);
  else if (k === 'p') jump(-1);
  else if (KEYS.includes(k) && !ev.shiftKey) { video.pause(); send({ op: 'add', frame: S.frame, label: S.classes[KEYS.indexOf(k)], team: S.team }); }
  else if (k === 'A' && ev.shiftKey) acceptWatched();  // not Caps Lock's a
  else if (k === 'a' && sel && sel.kind === 'label' && sel.model) status(`${sel.label} at ${clock(sel.frame)} is already accepted (r rejects it, Delete removes it)`);
  else if (k === 'a') sel && sel.kind === 'prediction' ? edit({ op: 'accept' }) : status('a accepts a selected prediction', 'error');
  else if (k === 'r' && sel && sel.kind === 'label' && sel.model) send({ op: 'reject', id: `p${sel.prediction}`, revision: sel.prediction_revision });
  else if (k === 'r') sel && sel.kind === 'prediction' ? edit({ op: 'reject' }) : status('r rejects a selected prediction', 'error');
  else if (k === 'Delete' || k === 'Backspace') sel && sel.kind === 'label' ? edit({ op: 'delete' }) : status('Delete removes a selected label (reject predictions with r)', 'error');
  else if (k === '[') edit({ op: 'move', by: -1 });
  else if (k === ']') edit({ op: 'move', by: 1 });
  else if (k === 't') edit({ op: 'team' });
  else if (k === 'v') sel && sel.kind === 'label' ? edit({ op: 'visibility' }) : status('v marks a selected label visible / not shown (accept a prediction first)', 'error');
  else if (k === 'T') setTeam(S.teams[1 - S.teams.indexOf(S.team)]);
  else if (k === 'F') toggleReviewed();
  else if (k === 'g') { $('frame-input').value = ''; $('frame-input').focus(); }
  else if (k === 'u') nextItem();
  else if (k === 'z') { zoom(0.5); drawTimeline(); }
  else if (k === 'x') { zoom(2); drawTimeline(); }
  else if (k === '?') $('help').hidden = !$('help').hidden;
  else if (k === 'Escape' && !$('help').hidden) $('help').hidden = true;
  else if (k === 'Escape') select(null);
  else done = false;
  if (done) ev.preventDefault();
});
$('help-button').addEventListener('click', () => { $('help').hidden = !$('help').hidden; });
$('reviewed-button').addEventListener('click', toggleReviewed);
$('team-toggle').addEventListener('click', (ev) => { const b = ev.target.closest('button'); if (b) setTeam(b.dataset.team); });
$('game-select').addEventListener('change', () => openGame(Number($('game-select').value)));
$('game-select').addEventListener('focus', loadGames);
$('author').value = localStorage.getItem('ballspot.author') || '';
$('author').addEventListener('change', () => {
  localStorage.setItem('ballspot.author', author());
  if (author()) localStorage.setItem('ballspot.author-asked', '1');
});
const whoami = call('whoami', {}).then((who) => {
  if (who) { S.login = who; $('author').value = who; $('author').disabled = true; $('author').title = 'your login'; }
}).catch(() => {});
// The Games tab opens a game here (a row clicked): its id arrives as this prop.
watch('goto_game', () => {
  const g = props.goto_game;
  if (g && g.game !== undefined) openGame(Number(g.game));
});
start();
