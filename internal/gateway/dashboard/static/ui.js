// DOM helpers, formatting, charts and the virtualised list. Every text
// reaches the page through textContent or attributes, never as HTML.

import { statusText } from './api.js';

// h builds an element: h('a', {href: '#/'}, 'text', child, ...). Attributes
// starting with "on" are event listeners; false, null and undefined ones are
// left out.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// svg builds an SVG element.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// fill replaces el's children with nodes, leaving out null, undefined and
// false (Element.append would show them as text).
export function fill(el, ...nodes) {
  clear(el);
  append(el, nodes);
  return el;
}

// problemBox shows a failed request as what it is: its status, type and
// detail, with what to do about a 401 or 403.
export function problemBox(p, what) {
  const status = p.status || 0;
  const heading = status ? `${status} ${p.title || statusText(status)}` : p.title || 'Error';
  const hint = {
    401: 'The token was not accepted: sign in again with a valid token.',
    403: 'Your role does not allow this. The viewer role reads, the operator role also deploys and changes applications, the admin role also revokes devices and opens the pairing window.',
    409: 'The object changed or is not in a state that allows this; reload and retry.',
    503: 'The gateway or Kubernetes is not ready; retry in a moment.',
  }[status];
  return h('section', { class: `problem problem-${status}`, role: 'alert', 'data-status': status, 'data-problem': p.type || '' },
    h('h2', {}, heading),
    what ? h('p', {}, what) : null,
    p.detail ? h('p', { class: 'detail' }, p.detail) : null,
    p.errors && p.errors.length ? h('ul', {}, p.errors.map((e) => h('li', {}, h('code', {}, e.field), `: ${e.detail}`))) : null,
    hint ? h('p', { class: 'hint' }, hint) : null,
    p.type ? h('p', { class: 'type' }, 'Problem type: ', h('code', {}, p.type)) : null);
}

// Formatting.

export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, ' UTC');
}

export function ago(s, now = Date.now()) {
  if (!s) return '—';
  const t = new Date(s).getTime();
  if (Number.isNaN(t)) return '—';
  let d = Math.round((now - t) / 1000);
  const future = d < 0;
  d = Math.abs(d);
  let out;
  if (d < 60) out = `${d}s`;
  else if (d < 3600) out = `${Math.floor(d / 60)}m`;
  else if (d < 86400) out = `${Math.floor(d / 3600)}h`;
  else out = `${Math.floor(d / 86400)}d`;
  return future ? `in ${out}` : `${out} ago`;
}

export function bytes(n) {
  if (n === undefined || n === null) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n % 1024 ? 1 : 0)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function num(n) {
  return (n || 0).toLocaleString('en');
}

// badge shows a phase; its class gives it a colour, its text says it.
export function badge(phase) {
  const p = phase || 'Pending';
  return h('span', { class: `badge phase-${p.toLowerCase()}` }, p);
}

// progress draws a rollout's counts as a labelled bar: running, updated
// but not running, failed, and the rest.
export function progress(targets, updated, running, failed) {
  targets = targets || 0;
  updated = updated || 0;
  running = running || 0;
  failed = failed || 0;
  const pct = (n) => (targets ? (100 * n) / targets : 0);
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': `${running} of ${targets} running, ${updated} updated, ${failed} failed` });
  const seg = (cls, n) => {
    const s = h('span', { class: cls });
    s.style.width = `${pct(n)}%`;
    return s;
  };
  bar.append(seg('seg-running', Math.min(running, targets)), seg('seg-updated', Math.max(0, Math.min(updated - running, targets))), seg('seg-failed', failed));
  return h('div', { class: 'progress' }, bar,
    h('span', { class: 'counts' }, `${num(targets)} targets · ${num(updated)} updated · ${num(running)} running · ${num(failed)} failed`));
}

// sparkline draws a small line chart of values with its label and last
// value; the chart is described for screen readers by its label.
export function sparkline(label, values, format) {
  const w = 160;
  const hgt = 36;
  const last = values.length ? values[values.length - 1] : null;
  const text = last === null ? '—' : format(last);
  const box = h('figure', { class: 'spark' }, h('figcaption', {}, h('span', {}, label), h('strong', {}, text)));
  if (values.length < 2) {
    box.append(h('p', { class: 'muted' }, 'collecting…'));
    return box;
  }
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  const pts = values.map((v, i) => `${((i / (values.length - 1)) * w).toFixed(1)},${(hgt - 2 - ((v - min) / span) * (hgt - 4)).toFixed(1)}`);
  box.append(svg('svg', { viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: 'img', 'aria-label': `${label}: ${values.length} samples from ${format(min)} to ${format(max)}, now ${text}` },
    svg('polyline', { points: pts.join(' '), fill: 'none', stroke: 'currentColor', 'stroke-width': 1.5 })));
  return box;
}

// table builds a table with a caption, headers and rows of cells.
export function table(caption, headers, rows, opts = {}) {
  return h('table', { class: opts.class || '' },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c, i) => (i === 0 && opts.rowHeader ? h('th', { scope: 'row' }, c) : h('td', {}, c)))))
      : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, opts.empty || 'Nothing here.'))));
}

// throttle calls fn at most once per ms, and once more after the last call.
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  let last = 0;
  const fire = () => {
    timer = null;
    last = Date.now();
    pending = false;
    fn();
  };
  const call = () => {
    pending = true;
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(fire, wait);
  };
  call.cancel = () => { if (timer) clearTimeout(timer); timer = null; pending = false; };
  call.pending = () => pending;
  return call;
}

// VirtualList shows a long list of rows of a fixed height, rendering only
// the rows in view. Rows are fetched in pages, in order, as the view needs
// them: fetchPage(continueToken) returns {items, total, continue}.
export class VirtualList {
  constructor({ label, rowHeight, fetchPage, renderRow, keyOf, onTotal, onError }) {
    this.rowHeight = rowHeight;
    this.fetchPage = fetchPage;
    this.renderRow = renderRow;
    this.keyOf = keyOf;
    this.onTotal = onTotal || (() => {});
    this.onError = onError || (() => {});
    this.items = [];
    this.index = new Map();
    this.total = 0;
    this.cont = undefined;
    this.loading = null;
    this.generation = 0;
    this.spacer = h('div', { class: 'vspacer' });
    this.el = h('div', { class: 'vlist', role: 'list', 'aria-label': label, tabindex: '-1' }, this.spacer);
    this.el.addEventListener('scroll', () => this.render());
    this.el.addEventListener('keydown', (e) => this.key(e));
    this.ro = new ResizeObserver(() => this.render());
    this.ro.observe(this.el);
  }

  destroy() { this.ro.disconnect(); this.generation++; }

  // reload starts over, keeping the scroll position.
  async reload() {
    const gen = ++this.generation;
    this.items = [];
    this.index = new Map();
    this.cont = undefined;
    this.loading = null;
    await this.ensure(gen, this.visibleEnd());
    if (gen === this.generation) this.render();
  }

  visibleEnd() {
    const h0 = this.el.clientHeight || 600;
    return Math.ceil((this.el.scrollTop + h0) / this.rowHeight) + 20;
  }

  async ensure(gen, n) {
    while (gen === this.generation && this.items.length < n && this.cont !== '') {
      if (!this.loading) {
        this.loading = (async () => {
          try {
            const page = await this.fetchPage(this.cont);
            if (gen !== this.generation) return;
            for (const it of page.items) {
              this.index.set(this.keyOf(it), this.items.length);
              this.items.push(it);
            }
            this.total = page.total;
            this.cont = page.continue || '';
            this.onTotal(this.total);
          } catch (err) {
            if (gen === this.generation) {
              this.cont = '';
              this.onError(err);
            }
          } finally {
            if (gen === this.generation) this.loading = null;
          }
        })();
      }
      await this.loading;
    }
  }

  // update replaces a loaded item in place (a watch's MODIFIED).
  update(item) {
    const i = this.index.get(this.keyOf(item));
    if (i === undefined) return false;
    this.items[i] = item;
    this.render();
    return true;
  }

  render() {
    const rh = this.rowHeight;
    this.spacer.style.height = `${this.total * rh}px`;
    const first = Math.max(0, Math.floor(this.el.scrollTop / rh) - 5);
    const end = Math.min(this.total, this.visibleEnd());
    if (end > this.items.length && this.cont !== '') {
      const gen = this.generation;
      this.ensure(gen, end).then(() => { if (gen === this.generation) this.render(); });
    }
    const focused = document.activeElement && this.el.contains(document.activeElement) ? document.activeElement.dataset.row : null;
    for (const row of [...this.el.querySelectorAll('.vrow')]) row.remove();
    const frag = document.createDocumentFragment();
    for (let i = first; i < Math.min(end, this.items.length); i++) {
      const row = this.renderRow(this.items[i], i);
      row.classList.add('vrow');
      row.setAttribute('role', 'listitem');
      row.setAttribute('aria-setsize', String(this.total));
      row.setAttribute('aria-posinset', String(i + 1));
      row.dataset.row = String(i);
      row.style.top = `${i * rh}px`;
      row.style.height = `${rh}px`;
      frag.append(row);
    }
    this.el.append(frag);
    if (focused !== null) {
      const again = this.el.querySelector(`[data-row="${focused}"] a, [data-row="${focused}"]`);
      if (again) again.focus({ preventScroll: true });
    }
  }

  // key moves the focus between rows with the arrow keys, Home and End.
  key(e) {
    const row = e.target.closest('.vrow');
    if (!row) return;
    let i = Number(row.dataset.row);
    if (e.key === 'ArrowDown') i++;
    else if (e.key === 'ArrowUp') i--;
    else if (e.key === 'Home') i = 0;
    else if (e.key === 'End') i = this.total - 1;
    else if (e.key === 'PageDown') i += 10;
    else if (e.key === 'PageUp') i -= 10;
    else return;
    e.preventDefault();
    i = Math.max(0, Math.min(this.total - 1, i));
    const top = i * this.rowHeight;
    if (top < this.el.scrollTop) this.el.scrollTop = top;
    else if (top + this.rowHeight > this.el.scrollTop + this.el.clientHeight) this.el.scrollTop = top + this.rowHeight - this.el.clientHeight;
    const gen = this.generation;
    this.ensure(gen, i + 1).then(() => {
      this.render();
      const target = this.el.querySelector(`[data-row="${i}"] a`);
      if (target) target.focus({ preventScroll: true });
    });
  }
}
