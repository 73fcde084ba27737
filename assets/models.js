// Ballspot Studio, Models tab: the job list (a progress bar per job, cancel in its row) and the
// loss / validation mAP@1 chart. Runs as the js_on_load of two gr.HTML (app/models.py); each
// draws the JSON value the tab's one-second timer sends. Text from jobs goes in with
// textContent only: a message may hold anything.
const root = element.querySelector('[data-widget]');
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

if (root && root.dataset.widget === 'jobs') {
  // Rows are kept by job id and updated in place, so a click is never lost to a redraw.
  const rows = new Map();
  const empty = el('div', 'bs-jobs-empty', 'No jobs yet: Retrain or Re-infer starts one; it keeps running if the page is closed.');
  root.append(empty);
  const makeRow = (id) => {
    const r = el('div', 'bs-job');
    r.dataset.id = String(id);
    const head = el('div', 'bs-job-head');
    const name = el('b'), phase = el('span', 'bs-job-phase'), when = el('span', 'bs-job-when');
    const cancel = el('button', 'bs-job-cancel', 'Cancel');
    cancel.type = 'button'; cancel.dataset.cancel = String(id); cancel.title = 'Stop this job (its model is not kept)';
    head.append(name, phase, when, cancel);
    const bar = el('div', 'bs-job-bar'), fill = el('div', 'bs-job-fill'), pct = el('span', 'bs-job-pct');
    bar.setAttribute('role', 'progressbar'); bar.setAttribute('aria-valuemin', '0'); bar.setAttribute('aria-valuemax', '100');
    bar.append(fill, pct);
    const msg = el('div', 'bs-job-msg');
    r.append(head, bar, msg);
    return { el: r, name, phase, when, cancel, bar, fill, pct, msg };
  };
  const update = (r, j, selected) => {
    r.el.className = `bs-job st-${j.status}` + (j.id === selected ? ' selected' : '');
    Object.assign(r.el.dataset, { status: j.status, progress: String(j.percent), phase: j.phase });
    r.name.textContent = `#${j.id} ${j.kind}`;
    r.phase.textContent = [j.phase, j.epoch ? `epoch ${j.epoch}` : ''].filter(Boolean).join(' · ');
    r.when.textContent = [j.started ? `started ${j.started}` : '', j.took ? `took ${j.took}` : '', j.left]
      .filter(Boolean).join(' · ');
    r.cancel.hidden = !j.cancellable;
    if (!j.cancellable) { r.cancel.disabled = false; r.cancel.textContent = 'Cancel'; }
    r.fill.style.width = `${j.percent}%`;
    r.pct.textContent = `${j.percent}%`;
    r.bar.setAttribute('aria-valuenow', String(j.percent));
    r.msg.textContent = j.message;
    r.msg.title = j.message;
  };
  const render = () => {
    const v = props.value || { jobs: [], selected: null };
    const jobs = v.jobs || [];
    empty.hidden = jobs.length > 0;
    const seen = new Set();
    jobs.forEach((j, i) => {
      let r = rows.get(j.id);
      if (!r) { r = makeRow(j.id); rows.set(j.id, r); }
      seen.add(j.id);
      update(r, j, v.selected);
      const at = root.children[i + 1] || null;  // after the empty-list line
      if (at !== r.el) root.insertBefore(r.el, at);
    });
    for (const [id, r] of rows) if (!seen.has(id)) { r.el.remove(); rows.delete(id); }
  };
  root.addEventListener('click', (ev) => {
    const stop = ev.target.closest('[data-cancel]');
    if (stop) {
      stop.disabled = true; stop.textContent = 'cancelling…';
      trigger('cancel_job', { job: Number(stop.dataset.cancel) });
      return;
    }
    const row = ev.target.closest('.bs-job');
    if (row) trigger('pick_job', { job: Number(row.dataset.id) });
  });
  // The tab's timer polls the jobs every second while the tab is shown. A list on screen whose
  // value has not changed for 3 s (each poll changes it) asks for the timer again.
  let polled = Date.now();
  watch('value', () => { polled = Date.now(); render(); });
  render();
  let shown = false;
  setInterval(() => {
    const now = root.offsetParent !== null && !document.hidden;
    if (now && !shown) polled = Date.now();  // just shown: the tab's own selection starts the timer
    shown = now;
    if (now && Date.now() - polled > 3000) {
      polled = Date.now();
      trigger('wake', {});
    }
  }, 1000);
}

if (root && root.dataset.widget === 'curve') {
  // Loss on the left axis (from 0), validation mAP@1 on the right (0 to 1); a marker on every
  // epoch, so a run of one epoch shows its point.
  const NS = 'http://www.w3.org/2000/svg';
  const COLOURS = { loss: '#e15759', 'valid mAP@1': '#4e79a7' };
  const svgEl = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const render = () => {
    const v = props.value || { rows: [], empty: 'no run yet' };
    const rows = v.rows || [];
    root.replaceChildren();
    const title = el('div', 'bs-curve-title', `Loss and validation mAP@1 per epoch${v.title ? ` (${v.title})` : ''}`);
    root.append(title);
    if (!rows.length) { root.append(el('div', 'bs-curve-empty', v.empty || 'no run yet')); return; }
    const W = Math.max(240, root.clientWidth || 360), H = 210, L = 44, R = 40, T = 10, B = 34;
    const epochs = rows.map((r) => r.epoch);
    const e0 = Math.min(...epochs), e1 = Math.max(...epochs);
    const lossMax = Math.max(...rows.filter((r) => r.series === 'loss').map((r) => r.value), 1e-6) * 1.1;
    const x = (e) => (e1 === e0 ? L + (W - L - R) / 2 : L + ((e - e0) / (e1 - e0)) * (W - L - R));
    const y = (r) => T + (H - T - B) * (1 - (r.series === 'loss' ? r.value / lossMax : r.value));
    const svg = svgEl('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'bs-curve' });
    svg.append(svgEl('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }));
    svg.append(svgEl('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }));
    svg.append(svgEl('line', { x1: W - R, y1: T, x2: W - R, y2: H - B, class: 'axis' }));
    for (const f of [0, 0.5, 1]) {
      const yy = T + (H - T - B) * (1 - f);
      svg.append(svgEl('text', { x: L - 4, y: yy + 3, 'text-anchor': 'end', fill: COLOURS.loss }, (lossMax * f).toFixed(2)));
      svg.append(svgEl('text', { x: W - R + 4, y: yy + 3, fill: COLOURS['valid mAP@1'] }, f.toFixed(1)));
    }
    const ticks = e1 === e0 ? [e0] : [...new Set([e0, Math.round((e0 + e1) / 2), e1])];
    for (const e of ticks) svg.append(svgEl('text', { x: x(e), y: H - B + 14, 'text-anchor': 'middle' }, String(e)));
    svg.append(svgEl('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, 'epoch'));
    for (const [series, colour] of Object.entries(COLOURS)) {
      const pts = rows.filter((r) => r.series === series).sort((a, b) => a.epoch - b.epoch);
      if (pts.length > 1) svg.append(svgEl('polyline', { points: pts.map((p) => `${x(p.epoch)},${y(p)}`).join(' '),
        fill: 'none', stroke: colour, 'stroke-width': 2 }));
      for (const p of pts) {
        const dot = svgEl('circle', { cx: x(p.epoch), cy: y(p), r: 4, fill: colour, class: 'bs-curve-point' });
        dot.dataset.series = series;
        dot.append(svgEl('title', {}, `epoch ${p.epoch}: ${series} ${p.value.toFixed(3)}`));
        svg.append(dot);
      }
    }
    root.append(svg);
    const legend = el('div', 'bs-curve-legend');
    for (const [series, colour] of Object.entries(COLOURS)) {
      const s = el('span', '', `● ${series}`); s.style.color = colour; legend.append(s);
    }
    root.append(legend);
  };
  watch('value', render);
  render();
}
