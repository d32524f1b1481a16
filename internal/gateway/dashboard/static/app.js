// The fleet dashboard: sign-in, a hash router and the views. Data comes
// from the gateway's HTTP API (/api/v1); lists update from its watches.

import { Client, Problem, query, scope } from './api.js';
import { h, clear, fill, problemBox, fmtTime, ago, bytes, num, badge, progress, sparkline, table, throttle, VirtualList } from './ui.js';

const TOKEN_KEY = 'wasmbed.token';
const NS_KEY = 'wasmbed.namespace';

const DEVICE_PHASES = ['Pending', 'Enrolling', 'Enrolled', 'Connected', 'Disconnected', 'Unreachable', 'Error'];
const DEVICE_TYPES = ['esp32', 'hifive1'];
const APP_PHASES = ['Pending', 'Deploying', 'Running', 'PartiallyRunning', 'Stopped', 'Failed'];
const DAPP_PHASES = ['Pending', 'Delivering', 'Installed', 'Running', 'Stopped', 'Trapped', 'LimitExceeded', 'Failed', 'Refused', 'Removing', 'Removed'];

const main = document.getElementById('main');
const toastEl = document.getElementById('toast');

const state = {
  client: null,
  self: null,
  ns: sessionStorage.getItem(NS_KEY) || '',
  view: null, // {abort: AbortController}
  signinMessage: null,
};

// --- session -----------------------------------------------------------------

function signedOut(problem) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.client = null;
  state.self = null;
  state.signinMessage = problem || null;
  if (location.hash !== '#/signin') location.hash = '#/signin';
  else route();
}

async function loadSelf() {
  const checkNs = state.ns || '';
  state.self = await state.client.get(`/api/v1/self${query({ namespace: checkNs })}`);
  document.getElementById('user').textContent = state.self.user;
}

// can reports whether the caller may call an operation (an OpenAPI
// operation id), as /api/v1/self answered.
function can(op) {
  return Boolean(state.self && state.self.operations && state.self.operations[op]);
}

// deployNamespace is where the deploy form creates applications.
function deployNamespace() {
  return state.ns || (state.self && state.self.defaultNamespace) || 'default';
}

function showChrome(on) {
  document.getElementById('nav').hidden = !on;
  document.getElementById('session').hidden = !on;
}

function toast(text) {
  toastEl.textContent = text;
  toastEl.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => toastEl.classList.remove('show'), 4000);
}

// --- router ------------------------------------------------------------------

const routes = [
  [/^#\/signin$/, viewSignIn, null],
  [/^#?\/?$/, viewOverview, 'overview'],
  [/^#\/devices$/, viewDevices, 'devices'],
  [/^#\/devices\/([^/]+)\/([^/]+)$/, viewDevice, 'devices'],
  [/^#\/applications$/, viewApplications, 'applications'],
  [/^#\/applications\/([^/]+)\/([^/]+)$/, viewApplication, 'applications'],
  [/^#\/deploy$/, viewDeploy, 'applications'],
  [/^#\/pairing$/, viewPairing, 'pairing'],
];

async function route() {
  if (state.view) state.view.abort.abort();
  const abort = new AbortController();
  state.view = { abort };
  const hash = location.hash || '#/';
  if (!state.client && hash !== '#/signin') {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      location.hash = '#/signin';
      return;
    }
    state.client = new Client(token, signedOut);
  }
  if (state.client && !state.self && hash !== '#/signin') {
    try {
      await loadSelf();
    } catch (err) {
      if (abort.signal.aborted) return;
      if (err instanceof Problem && err.status === 401) return; // signedOut took over
      render(h('h1', {}, 'Wasmbed fleet'), problemBox(err, 'The dashboard could not ask the gateway who you are.'));
      return;
    }
  }
  for (const [re, view, nav] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    showChrome(Boolean(state.client && nav));
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const args = m.slice(1).map(decodeURIComponent);
    try {
      await view(abort.signal, ...args);
    } catch (err) {
      if (abort.signal.aborted || err.name === 'AbortError') return;
      if (err instanceof Problem && err.status === 401) return;
      render(h('h1', {}, 'Wasmbed fleet'), problemBox(err instanceof Problem ? err : new Problem(0, { detail: String(err) })));
    }
    return;
  }
  render(h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '#/' }, 'Go to the overview.')));
}

// render replaces the page's content and moves the focus to it, as a page
// load would, for keyboard and screen-reader users.
function render(...nodes) {
  fill(main, ...nodes.filter(Boolean));
  const h1 = main.querySelector('h1');
  document.title = h1 ? `${h1.textContent} · Wasmbed` : 'Wasmbed';
  main.focus({ preventScroll: true });
}

// forbiddenPage is what a page the caller's role may not use shows: a 403
// with what was refused, as the API would answer it.
function forbiddenPage(title, op, what) {
  render(h('h1', {}, title), problemBox(new Problem(403, {
    type: 'https://wasmbed.github.io/problems/forbidden', title: 'Forbidden',
    detail: `${state.self.user} may not ${what} (operation ${op}, checked with Kubernetes in namespace "${state.self.namespace}")`,
  })));
}

// --- sign-in -----------------------------------------------------------------

function viewSignIn() {
  showChrome(false);
  toastEl.classList.remove('show');
  const msg = state.signinMessage;
  state.signinMessage = null;
  const err = h('div', { id: 'signin-error' }, msg ? problemBox(msg, 'Signing in failed.') : null);
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false', 'aria-describedby': 'token-help signin-error' });
  const form = h('form', { class: 'card signin', onsubmit: async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    const c = new Client(token, () => {});
    clear(err);
    try {
      const self = await c.get('/api/v1/self');
      sessionStorage.setItem(TOKEN_KEY, token);
      state.client = new Client(token, signedOut);
      state.self = self;
      await loadSelf();
      location.hash = '#/';
    } catch (p) {
      err.append(problemBox(p, 'Signing in failed.'));
      input.focus();
    }
  } },
  h('label', { for: 'token' }, 'Bearer token'),
  input,
  h('p', { id: 'token-help', class: 'help' }, 'A Kubernetes token the gateway accepts, e.g. ', h('code', {}, 'kubectl create token dashboard'),
    '. It is kept in this tab only and sent to this gateway alone.'),
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  render(h('h1', {}, 'Sign in to the Wasmbed fleet'), err, form);
  input.focus();
}

// --- overview ----------------------------------------------------------------

async function viewOverview(signal) {
  const sc = scope(state.ns);
  const summaryEl = h('div', { class: 'grid' });
  const appsEl = h('section', { class: 'card wide', 'aria-labelledby': 'apps-h' }, h('h2', { id: 'apps-h' }, 'Applications'));
  const eventsEl = h('section', { class: 'card wide', 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Recent events'));
  const live = h('p', { class: 'live muted', 'aria-live': 'off' }, 'Connecting…');
  render(h('div', { class: 'title' }, h('h1', {}, 'Fleet overview'), live), summaryEl, appsEl, eventsEl);

  const loadSummary = async () => {
    const s = await state.client.get(`${sc}/summary`, { signal });
    fill(summaryEl, ...summaryCards(s));
    live.textContent = `Live · updated ${fmtTime(s.generatedAt)}`;
  };
  const loadApps = async () => {
    const page = await state.client.get(`${sc}/applications?limit=50`, { signal });
    const rows = page.items.map((a) => [
      h('a', { href: `#/applications/${a.metadata.namespace}/${a.metadata.name}` }, a.metadata.name),
      a.metadata.namespace, badge(a.status.phase), rolloutProgress(a), a.status.rollout && a.status.rollout.paused ? h('span', { class: 'badge phase-failed' }, 'Paused') : '']);
    fill(appsEl, h('h2', { id: 'apps-h' }, `Applications (${num(page.total)})`),
      table(null, ['Name', 'Namespace', 'Phase', 'Rollout', ''], rows, { empty: 'No applications yet.', class: 'apps' }),
      page.total > page.items.length ? h('p', {}, h('a', { href: '#/applications' }, `All ${num(page.total)} applications`)) : null);
  };
  const loadEvents = async () => {
    let list;
    try {
      list = await state.client.get(`${sc}/events?limit=15`, { signal });
    } catch (p) {
      if (p.name === 'AbortError') throw p;
      fill(eventsEl, h('h2', { id: 'events-h' }, 'Recent events'), problemBox(p, 'Events could not be read.'));
      return;
    }
    fill(eventsEl, h('h2', { id: 'events-h' }, 'Recent events'), eventsTable(list.items));
  };
  const failed = (where) => (p) => {
    if (signal.aborted || p.name === 'AbortError') return;
    if (where === summaryEl) fill(summaryEl, problemBox(p, 'The fleet summary could not be read.'));
    else fill(appsEl, h('h2', { id: 'apps-h' }, 'Applications'), problemBox(p, 'The applications could not be read.'));
    live.textContent = 'Not live';
  };
  const refreshSummary = throttle(() => loadSummary().catch(failed(summaryEl)), 1000);
  const refreshApps = throttle(() => loadApps().catch(failed(appsEl)), 1000);
  const refreshEvents = throttle(() => loadEvents().catch(() => {}), 5000);
  signal.addEventListener('abort', () => { refreshSummary.cancel(); refreshApps.cancel(); refreshEvents.cancel(); });

  await Promise.all([loadSummary().catch(failed(summaryEl)), loadApps().catch(failed(appsEl)), loadEvents()]);
  if (signal.aborted || main.querySelector('.problem-403, .problem-401')) return;
  const onChange = () => { refreshSummary(); refreshEvents(); };
  state.client.watch(`${sc}/devices`, { ready: refreshSummary, event: onChange }, signal);
  state.client.watch(`${sc}/applications`, { ready: refreshApps, event: () => { refreshApps(); onChange(); } }, signal);
}

function summaryCards(s) {
  const d = s.devices;
  const a = s.applications;
  const phaseRows = DEVICE_PHASES.map((p) => [badge(p), num(d.byPhase[p])]);
  const bar = h('div', { class: 'stack', role: 'img', 'aria-label': DEVICE_PHASES.map((p) => `${d.byPhase[p]} ${p}`).join(', ') });
  for (const p of DEVICE_PHASES) {
    if (!d.byPhase[p]) continue;
    const seg = h('span', { class: `phase-${p.toLowerCase()}`, title: `${p}: ${d.byPhase[p]}` });
    seg.style.flexGrow = String(d.byPhase[p]);
    bar.append(seg);
  }
  const gws = Object.entries(d.gateways).sort((x, y) => x[0].localeCompare(y[0]));
  return [
    h('section', { class: 'card', 'aria-labelledby': 'dev-h' },
      h('h2', { id: 'dev-h' }, 'Devices'),
      h('p', { class: 'big' }, h('a', { href: '#/devices' }, num(d.total)), h('span', { class: 'muted' }, d.revoked ? ` · ${num(d.revoked)} revoked` : '')),
      bar,
      table('By phase', ['Phase', 'Devices'], phaseRows, { rowHeader: true, class: 'compact' })),
    h('section', { class: 'card', 'aria-labelledby': 'type-h' },
      h('h2', { id: 'type-h' }, 'Board types'),
      table('By board type', ['Type', 'Devices'], DEVICE_TYPES.map((t) => [t, num(d.byType[t])]), { rowHeader: true, class: 'compact' }),
      h('h2', { id: 'gw-h' }, 'Gateways'),
      table('Device sessions by gateway replica', ['Gateway', 'Sessions'], gws.map(([g, n]) => [g, num(n)]), { rowHeader: true, class: 'compact', empty: 'No device is connected.' })),
    h('section', { class: 'card', 'aria-labelledby': 'rollout-h' },
      h('h2', { id: 'rollout-h' }, 'Rollouts'),
      h('p', { class: 'big' }, h('a', { href: '#/applications' }, num(a.total)), h('span', { class: 'muted' }, ' applications')),
      progress(a.targets, a.updated, a.running, a.failed),
      table('Applications by phase', ['Phase', 'Applications'], APP_PHASES.map((p) => [badge(p), num(a.byPhase[p])]), { rowHeader: true, class: 'compact' })),
  ];
}

function rolloutProgress(a) {
  const s = a.status || {};
  return progress(s.targetCount, s.updatedCount, s.runningCount, s.failedCount);
}

function eventsTable(items) {
  return table(null, ['When', 'Type', 'Reason', 'Object', 'Message'], items.map((e) => [
    h('time', { datetime: e.time, title: fmtTime(e.time) }, ago(e.time)),
    h('span', { class: e.type === 'Warning' ? 'badge phase-failed' : 'badge' }, e.type),
    e.reason,
    objectLink(e.regarding),
    `${e.note || ''}${e.count > 1 ? ` (×${e.count})` : ''}`,
  ]), { empty: 'No recent events.', class: 'events' });
}

function objectLink(r) {
  const text = `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;
  if (r.kind === 'Device') return h('a', { href: `#/devices/${r.namespace}/${r.name}` }, text);
  if (r.kind === 'Application') return h('a', { href: `#/applications/${r.namespace}/${r.name}` }, text);
  return text;
}

// --- devices -----------------------------------------------------------------

function rowHeight() {
  return window.matchMedia('(max-width: 40rem)').matches ? 64 : 40;
}

async function viewDevices(signal) {
  const sc = scope(state.ns);
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const f = { search: '', phase: '', type: '', gateway: '', labelSelector: '' };
  const totalEl = h('p', { class: 'muted', 'aria-live': 'polite', id: 'device-count' }, 'Loading…');
  const errEl = h('div');
  const field = (name, label, el) => h('div', { class: 'field' }, h('label', { for: `f-${name}` }, label), el);
  const input = (name, placeholder) => h('input', { id: `f-${name}`, name, placeholder, autocomplete: 'off', spellcheck: 'false' });
  const select = (name, values, any) => h('select', { id: `f-${name}`, name }, h('option', { value: '' }, any), values.map((v) => h('option', { value: v }, v)));
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter devices', onsubmit: (e) => e.preventDefault() },
    field('search', 'Name or id starts with', input('search', 'greenhouse-')),
    field('phase', 'Phase', select('phase', DEVICE_PHASES, 'Any phase')),
    field('type', 'Board type', select('type', DEVICE_TYPES, 'Any type')),
    field('gateway', 'Gateway', input('gateway', 'wasmbed-gateway-0')),
    field('labelSelector', 'Labels', input('labelSelector', 'site=plant-1')));
  const header = h('div', { class: 'vhead', 'aria-hidden': 'true' },
    h('span', {}, 'Device'), h('span', {}, 'Phase'), h('span', {}, 'Type'), h('span', {}, 'Gateway'), h('span', {}, 'Last seen'), h('span', {}, 'Firmware'));
  const list = new VirtualList({
    label: 'Devices',
    rowHeight: rowHeight(),
    keyOf: (d) => `${d.metadata.namespace}/${d.metadata.name}`,
    fetchPage: (cont) => state.client.get(`${sc}/devices${query(Object.assign({ limit: 500, continue: cont }, f))}`, { signal }),
    onTotal: (n) => { totalEl.textContent = `${num(n)} device${n === 1 ? '' : 's'}`; },
    onError: (p) => { if (p.name !== 'AbortError') fill(errEl, problemBox(p, 'The devices could not be listed.')); },
    renderRow: (d) => h('div', { class: 'drow' },
      h('span', { class: 'name' }, h('a', { href: `#/devices/${d.metadata.namespace}/${d.metadata.name}` }, state.ns ? d.metadata.name : `${d.metadata.namespace}/${d.metadata.name}`),
        d.spec.revoked ? h('span', { class: 'badge phase-error' }, 'revoked') : null),
      h('span', {}, badge(d.status.phase)),
      h('span', {}, d.spec.deviceType),
      h('span', {}, d.status.gateway || '—'),
      h('span', {}, ago(d.status.lastSeen || (d.status.connectedSince))),
      h('span', { class: 'muted' }, d.status.firmware ? d.status.firmware.version || '' : '')),
  });
  signal.addEventListener('abort', () => list.destroy());
  render(h('div', { class: 'title' }, h('h1', {}, 'Devices'), totalEl), filters, errEl, h('div', { class: 'vwrap' }, header, list.el));

  for (const [k, v] of params) if (k in f) { f[k] = v; filters.elements[k].value = v; }
  let watchAbort = null;
  const restart = () => {
    clear(errEl);
    if (watchAbort) watchAbort.abort();
    watchAbort = new AbortController();
    signal.addEventListener('abort', () => watchAbort.abort(), { once: true });
    const reload = throttle(() => list.reload(), 2000);
    watchAbort.signal.addEventListener('abort', () => reload.cancel());
    const wq = Object.assign({}, f);
    let loaded = false;
    state.client.watch(`${sc}/devices${query(wq)}`, {
      ready: () => { loaded = true; list.reload(); },
      event: (type, d) => { if (type !== 'MODIFIED' || !list.update(d)) reload(); },
      error: (p) => {
        fill(errEl, problemBox(p, 'The device list is not live.'));
        // Without a watch the list is still worth showing.
        if (!loaded && p.status !== 401 && p.status !== 403) { loaded = true; list.reload(); }
      },
    }, watchAbort.signal);
  };
  const changed = throttle(() => {
    for (const k of Object.keys(f)) f[k] = filters.elements[k].value.trim();
    history.replaceState(null, '', `#/devices${query(f)}`.replace('#/devices?', '#/devices?'));
    list.el.scrollTop = 0;
    restart();
  }, 300);
  filters.addEventListener('input', changed);
  filters.addEventListener('change', changed);
  signal.addEventListener('abort', () => changed.cancel());
  restart();
}

async function viewDevice(signal, ns, name) {
  const path = `/api/v1/namespaces/${encodeURIComponent(ns)}/devices/${encodeURIComponent(name)}`;
  let dev = await state.client.get(path, { signal });
  const infoEl = h('div');
  const appsEl = h('section', { class: 'card wide', 'aria-labelledby': 'dapps-h' });
  const metricsEl = h('section', { class: 'card wide', 'aria-labelledby': 'metrics-h' }, h('h2', { id: 'metrics-h' }, 'Metrics'));
  const eventsEl = h('section', { class: 'card wide', 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Events'));
  const actions = h('div', { class: 'actions' });
  const titleEl = h('h1', {}, `Device ${name}`);
  render(h('p', { class: 'crumbs' }, h('a', { href: '#/devices' }, 'Devices'), ` / ${ns}`), h('div', { class: 'title' }, titleEl, actions), infoEl, appsEl, metricsEl, eventsEl);

  const showDevice = () => {
    const s = dev.status || {};
    const certDays = s.certificateNotAfter ? (new Date(s.certificateNotAfter).getTime() - Date.now()) / 86400000 : null;
    fill(infoEl, h('section', { class: 'card wide', 'aria-labelledby': 'state-h' }, h('h2', { id: 'state-h' }, 'State'),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Phase'), h('dd', {}, badge(s.phase), dev.spec.revoked ? h('span', { class: 'badge phase-error' }, 'revoked') : null),
        h('dt', {}, 'Board'), h('dd', {}, dev.spec.deviceType),
        h('dt', {}, 'Device id'), h('dd', {}, h('code', {}, dev.spec.deviceId)),
        h('dt', {}, 'Gateway'), h('dd', {}, s.gateway || '—'),
        h('dt', {}, 'Connected since'), h('dd', {}, fmtTime(s.connectedSince)),
        h('dt', {}, 'Last seen'), h('dd', {}, h('time', { datetime: s.lastSeen || '' }, s.lastSeen ? `${fmtTime(s.lastSeen)} (${ago(s.lastSeen)})` : '—')),
        h('dt', {}, 'Certificate expires'), h('dd', { class: certDays !== null && certDays < 2 / 24 ? 'warn' : '' },
          s.certificateNotAfter ? `${fmtTime(s.certificateNotAfter)} (${ago(s.certificateNotAfter)})` : '—'),
        h('dt', {}, 'Firmware'), h('dd', {}, s.firmware ? `${s.firmware.version || '?'} · ${s.firmware.runtime || '?'} · protocol ${s.firmware.protocolVersion || '?'}` : '—'),
        h('dt', {}, 'Capabilities'), h('dd', {}, (dev.spec.capabilities || []).join(', ') || '—'),
        h('dt', {}, 'Labels'), h('dd', {}, labelsText(dev.metadata.labels))),
      conditionsTable(s.conditions)));
    clear(actions);
    if (can('revokeDevice') && !dev.spec.revoked) {
      actions.append(h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!window.confirm(`Revoke device ${ns}/${name}? Its session is closed and its certificates are refused from then on.`)) return;
        try {
          dev = await state.client.post(`${path}/revoke`, {});
          toast(`Device ${name} revoked`);
          showDevice();
        } catch (p) {
          infoEl.prepend(problemBox(p, 'The device could not be revoked.'));
        }
      } }, 'Revoke device'));
    }
  };
  showDevice();

  const dapps = new Map();
  const showApps = () => {
    const items = [...dapps.values()].sort((a, b) => a.spec.application.localeCompare(b.spec.application));
    fill(appsEl, h('h2', { id: 'dapps-h' }, 'Applications'), table(null, ['Application', 'Phase', 'Desired', 'Version', 'Reason'], items.map((d) => [
      h('a', { href: `#/applications/${d.metadata.namespace}/${d.spec.application}` }, d.spec.application),
      badge(d.status.phase), d.spec.state || 'running', d.status.version || d.spec.version || '—',
      [d.status.reason || '', d.status.message ? ` — ${d.status.message}` : ''].join('')]), { empty: 'No application on this device.' }));
  };
  const loadApps = async () => {
    const page = await state.client.get(`${path}/applications?limit=500`, { signal });
    dapps.clear();
    for (const d of page.items) dapps.set(d.metadata.name, d);
    showApps();
  };
  const loadEvents = throttle(async () => {
    try {
      const l = await state.client.get(`/api/v1/namespaces/${encodeURIComponent(ns)}/events${query({ kind: 'Device', name, limit: 10 })}`, { signal });
      fill(eventsEl, h('h2', { id: 'events-h' }, 'Events'), eventsTable(l.items));
    } catch (p) {
      if (p.name !== 'AbortError') fill(eventsEl, h('h2', { id: 'events-h' }, 'Events'), problemBox(p, 'Events could not be read.'));
    }
  }, 5000);
  signal.addEventListener('abort', () => loadEvents.cancel());
  loadEvents();
  state.client.watch(`${path}/applications`, {
    ready: () => loadApps().catch((p) => { if (p.name !== 'AbortError') fill(appsEl, problemBox(p)); }),
    event: (type, d) => { if (type === 'DELETED') dapps.delete(d.metadata.name); else dapps.set(d.metadata.name, d); showApps(); },
  }, signal);
  state.client.watch(`/api/v1/namespaces/${encodeURIComponent(ns)}/devices${query({ search: name })}`, {
    event: (type, d) => {
      if (d.metadata && d.metadata.name === name) { dev = d; showDevice(); loadEvents(); }
    },
  }, signal);

  // Metrics are not streamed: the device's last report is fetched every
  // few seconds while this page is open, and kept for the charts.
  const hist = { free: [], rssi: [], loss: [], apps: new Map() };
  const keep = (arr, v) => { arr.push(v); if (arr.length > 60) arr.shift(); };
  let lastAt = '';
  const pollMetrics = async () => {
    let m;
    try {
      m = await state.client.get(`${path}/metrics`, { signal });
    } catch (p) {
      if (p.name === 'AbortError') return;
      fill(metricsEl, h('h2', { id: 'metrics-h' }, 'Metrics'),
        p.type === 'metrics-unavailable' ? h('p', { class: 'muted' }, p.detail) : problemBox(p, 'The metrics could not be read.'));
      return;
    }
    if (m.receivedAt !== lastAt) {
      lastAt = m.receivedAt;
      keep(hist.free, m.freeMemoryBytes);
      keep(hist.rssi, m.link.rssi);
      keep(hist.loss, m.link.lossPermille);
      for (const a of m.applications) {
        if (!hist.apps.has(a.name)) hist.apps.set(a.name, { mem: [], fuel: [], exec: [], traps: [] });
        const ha = hist.apps.get(a.name);
        keep(ha.mem, a.memoryBytes);
        keep(ha.fuel, a.fuel);
        keep(ha.exec, a.executions);
        keep(ha.traps, a.traps);
      }
    }
    const appCharts = m.applications.map((a) => {
      const ha = hist.apps.get(a.name);
      return h('div', { class: 'app-metrics' }, h('h3', {}, a.name), h('div', { class: 'sparks' },
        sparkline('Memory', ha.mem, bytes), sparkline('Fuel used', ha.fuel, num), sparkline('Executions', ha.exec, num), sparkline('Traps', ha.traps, num)));
    });
    fill(metricsEl, h('h2', { id: 'metrics-h' }, 'Metrics'),
      h('p', { class: 'muted' }, `Last report ${fmtTime(m.receivedAt)} · up ${Math.floor(m.uptimeSeconds / 60)} min`),
      h('div', { class: 'sparks' }, sparkline('Free memory', hist.free, bytes), sparkline('Signal (RSSI)', hist.rssi, (v) => `${v} dBm`),
        sparkline('Packet loss', hist.loss, (v) => `${(v / 10).toFixed(1)}%`)),
      appCharts);
  };
  await pollMetrics();
  const timer = setInterval(pollMetrics, 5000);
  signal.addEventListener('abort', () => clearInterval(timer));
}

function labelsText(labels) {
  const e = Object.entries(labels || {});
  return e.length ? e.map(([k, v]) => h('code', { class: 'label' }, `${k}=${v}`)) : '—';
}

function conditionsTable(conds) {
  if (!conds || !conds.length) return null;
  return table('Conditions', ['Type', 'Status', 'Reason', 'Message', 'Since'], conds.map((c) => [
    c.type, c.status, c.reason || '', c.message || '', h('time', { datetime: c.lastTransitionTime }, ago(c.lastTransitionTime))]), { rowHeader: true });
}

// --- applications ------------------------------------------------------------

async function viewApplications(signal) {
  const sc = scope(state.ns);
  const errEl = h('div');
  const listEl = h('div');
  const searchIn = h('input', { id: 'app-search', name: 'search', autocomplete: 'off', spellcheck: 'false', placeholder: 'blinky' });
  const phaseIn = h('select', { id: 'app-phase', name: 'phase' }, h('option', { value: '' }, 'Any phase'), APP_PHASES.map((p) => h('option', { value: p }, p)));
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter applications', onsubmit: (e) => e.preventDefault() },
    h('div', { class: 'field' }, h('label', { for: 'app-search' }, 'Name starts with'), searchIn),
    h('div', { class: 'field' }, h('label', { for: 'app-phase' }, 'Phase'), phaseIn));
  const deployBtn = can('deployApplication') || can('deployApplicationToDefaultNamespace')
    ? h('a', { class: 'button primary', href: '#/deploy' }, 'Deploy an application') : null;
  render(h('div', { class: 'title' }, h('h1', {}, 'Applications'), deployBtn), filters, errEl, listEl);
  let items = [];
  let cont = '';
  let total = 0;
  const draw = () => {
    fill(listEl, 
      h('p', { class: 'muted', 'aria-live': 'polite' }, `${num(total)} application${total === 1 ? '' : 's'}`),
      table(null, ['Name', 'Namespace', 'Phase', 'Version', 'State', 'Rollout'], items.map((a) => [
        h('a', { href: `#/applications/${a.metadata.namespace}/${a.metadata.name}` }, a.metadata.name), a.metadata.namespace,
        [badge(a.status.phase), a.status.rollout && a.status.rollout.paused ? h('span', { class: 'badge phase-failed' }, 'Paused') : null],
        a.spec.version || '—', a.spec.state || 'running', rolloutProgress(a)]), { empty: 'No applications match.', class: 'apps' }),
      cont ? h('button', { type: 'button', onclick: () => load(true) }, 'Show more') : null);
  };
  const load = async (more) => {
    const page = await state.client.get(`${sc}/applications${query({ limit: 100, continue: more ? cont : '', search: searchIn.value.trim(), phase: phaseIn.value })}`, { signal });
    items = more ? items.concat(page.items) : page.items;
    cont = page.continue || '';
    total = page.total;
    draw();
  };
  const failed = (p) => { if (p.name !== 'AbortError') fill(errEl, problemBox(p, 'The applications could not be listed.')); };
  const reload = throttle(() => load(false).catch(failed), 1000);
  signal.addEventListener('abort', () => reload.cancel());
  filters.addEventListener('input', reload);
  await load(false).catch(failed);
  if (errEl.firstChild) return;
  state.client.watch(`${sc}/applications`, {
    event: (type, a) => {
      const i = items.findIndex((x) => x.metadata.uid === a.metadata.uid);
      if (type === 'MODIFIED' && i >= 0) { items[i] = a; draw(); } else reload();
    },
  }, signal);
}

async function viewApplication(signal, ns, name) {
  const path = `/api/v1/namespaces/${encodeURIComponent(ns)}/applications/${encodeURIComponent(name)}`;
  let app = await state.client.get(path, { signal });
  const msgEl = h('div');
  const infoEl = h('div');
  const rolloutEl = h('section', { class: 'card wide', 'aria-labelledby': 'targets-h' });
  const eventsEl = h('section', { class: 'card wide', 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Events'));
  const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' });
  render(h('p', { class: 'crumbs' }, h('a', { href: '#/applications' }, 'Applications'), ` / ${ns}`),
    h('div', { class: 'title' }, h('h1', {}, `Application ${name}`), actions), msgEl, infoEl, rolloutEl, eventsEl);

  const act = (label, op, method, suffix, confirmText, cls) => {
    if (!can(op)) return null;
    return h('button', { type: 'button', class: cls || '', 'data-op': op, onclick: async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      clear(msgEl);
      try {
        const res = await state.client.request(method, `${path}${suffix}`, { body: method === 'DELETE' ? undefined : {} });
        if (method === 'DELETE') {
          toast(`Application ${name} is being deleted`);
          location.hash = '#/applications';
          return;
        }
        app = res;
        toast(`${label}: done`);
        showApp();
      } catch (p) {
        msgEl.append(problemBox(p, `${label} failed.`));
      }
    } }, label);
  };
  const showApp = () => {
    const sp = app.spec;
    const st = app.status || {};
    const ro = st.rollout || {};
    const strategy = sp.strategy || {};
    fill(actions, ...[
      sp.state === 'stopped' ? act('Start', 'startApplication', 'POST', '/start') : act('Stop', 'stopApplication', 'POST', '/stop'),
      ro.paused ? act('Resume rollout', 'resumeRollout', 'POST', '/rollout/resume', null, 'primary') : null,
      ro.previous ? act(`Undo to ${ro.previous.version || ro.previous.revision}`, 'undoRollout', 'POST', '/rollout/undo',
        `Roll ${name} back to version ${ro.previous.version || ro.previous.revision}?`) : null,
      act('Delete', 'deleteApplication', 'DELETE', '', `Delete application ${ns}/${name}? Every device removes it.`, 'danger'),
    ].filter(Boolean));
    fill(infoEl, 
      ro.paused ? h('div', { class: 'banner', role: 'status' }, h('strong', {}, 'Rollout paused'),
        ` since ${fmtTime(ro.pausedAt)}: too many devices failed the current version (threshold ${strategy.failureThreshold ?? 25}%). `,
        can('resumeRollout') ? 'Resume it, or undo to the previous version.' : 'An operator may resume it or undo.') : null,
      h('section', { class: 'card wide', 'aria-labelledby': 'app-h' }, h('h2', { id: 'app-h' }, 'Rollout'),
        h('p', {}, badge(st.phase), ' ', sp.state === 'stopped' ? 'desired state: stopped' : 'desired state: running'),
        progress(st.targetCount, st.updatedCount, st.runningCount, st.failedCount),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Version'), h('dd', {}, sp.version || '—', ro.current ? h('span', { class: 'muted' }, ` (revision ${ro.current.revision.slice(0, 12)})`) : null),
          h('dt', {}, 'Previous version'), h('dd', {}, ro.previous ? `${ro.previous.version || '—'} (revision ${ro.previous.revision.slice(0, 12)})` : '—'),
          h('dt', {}, 'Module'), h('dd', {}, sp.confidential ? 'confidential (sealed)' : `${bytes(sp.module && sp.module.size)} · sha256 `, sp.confidential ? null : h('code', {}, ((sp.module && sp.module.sha256) || '').slice(0, 16))),
          h('dt', {}, 'Targets'), h('dd', {}, (sp.targetDevices || []).join(', ') || '—'),
          h('dt', {}, 'Selector'), h('dd', {}, selectorText(sp.selector)),
          h('dt', {}, 'Limits'), h('dd', {}, `memory ${bytes(sp.config && sp.config.memoryLimit)} · timeout ${(sp.config && sp.config.executionTimeout) || '—'} · stack ${bytes(sp.config && sp.config.maxStackSize)}`),
          h('dt', {}, 'Strategy'), h('dd', {}, `at most ${strategy.maxUpdating ?? '25%'} updating at once; pause when more than ${strategy.failureThreshold ?? 25}% fail`),
          h('dt', {}, 'Last deployed'), h('dd', {}, fmtTime(st.lastDeployed)),
          h('dt', {}, 'Not targeted'), h('dd', {}, st.untargetedCount ? `${st.untargetedCount}: ${(st.untargetedReasons || []).map((r) => `${r.reason} ×${r.count}`).join(', ')}` : '—')),
        st.failingDevices && st.failingDevices.length ? table('Failing devices', ['Device', 'Phase', 'Reason', 'Message'], st.failingDevices.map((f) => [
          h('a', { href: `#/devices/${ns}/${f.device}` }, f.device), badge(f.phase), f.reason || '', f.message || ''])) : null,
        conditionsTable(st.conditions)));
  };
  showApp();

  // Per-device rollout state: a page of DeviceApplications, live.
  const phaseSel = h('select', { id: 'ro-phase' }, h('option', { value: '' }, 'Any phase'), DAPP_PHASES.map((p) => h('option', { value: p }, p)));
  const searchIn = h('input', { id: 'ro-search', autocomplete: 'off', spellcheck: 'false' });
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter devices of the rollout', onsubmit: (e) => e.preventDefault() },
    h('div', { class: 'field' }, h('label', { for: 'ro-search' }, 'Device starts with'), searchIn),
    h('div', { class: 'field' }, h('label', { for: 'ro-phase' }, 'Phase'), phaseSel));
  const tableEl = h('div');
  rolloutEl.append(h('h2', { id: 'targets-h' }, 'Devices'), filters, tableEl);
  let rows = new Map();
  let page = null;
  const drawRollout = () => {
    const items = [...rows.values()].sort((a, b) => a.spec.device.localeCompare(b.spec.device));
    const phases = page ? DAPP_PHASES.filter((p) => page.phases[p]).map((p) => `${page.phases[p]} ${p}`).join(' · ') : '';
    fill(tableEl, h('p', { class: 'muted', 'aria-live': 'polite' }, `${num(page ? page.total : 0)} devices${phases ? ` · ${phases}` : ''}`),
      table(null, ['Device', 'Phase', 'Version', 'Gateway', 'Reason', 'Message'], items.map((d) => [
        h('a', { href: `#/devices/${ns}/${d.spec.device}` }, d.spec.device), badge(d.status.phase), d.status.version || '—',
        d.status.gateway || '—', d.status.reason || '', d.status.message || '']), { empty: 'No device has this application yet.', class: 'rollout' }),
      page && page.continue ? h('p', { class: 'muted' }, `Showing the first ${items.length}; filter to see others.`) : null);
  };
  const loadRollout = async () => {
    page = await state.client.get(`${path}/rollout${query({ limit: 200, phase: phaseSel.value, search: searchIn.value.trim() })}`, { signal });
    rows = new Map(page.items.map((d) => [d.metadata.name, d]));
    drawRollout();
  };
  const reloadRollout = throttle(() => loadRollout().catch((p) => { if (p.name !== 'AbortError') fill(tableEl, problemBox(p)); }), 1000);
  const loadEvents = throttle(async () => {
    try {
      const l = await state.client.get(`/api/v1/namespaces/${encodeURIComponent(ns)}/events${query({ name, limit: 15 })}`, { signal });
      fill(eventsEl, h('h2', { id: 'events-h' }, 'Events'), eventsTable(l.items.filter((e) => e.regarding.kind !== 'Device')));
    } catch (p) {
      if (p.name !== 'AbortError') fill(eventsEl, h('h2', { id: 'events-h' }, 'Events'), problemBox(p, 'Events could not be read.'));
    }
  }, 5000);
  signal.addEventListener('abort', () => { reloadRollout.cancel(); loadEvents.cancel(); });
  filters.addEventListener('input', reloadRollout);
  filters.addEventListener('change', reloadRollout);
  loadEvents();
  state.client.watch(`${path}/rollout`, {
    ready: reloadRollout,
    event: (type, d) => {
      const keep = (!phaseSel.value || d.status.phase === phaseSel.value) && d.spec.device.startsWith(searchIn.value.trim());
      if (type === 'MODIFIED' && rows.has(d.metadata.name) && keep) { rows.set(d.metadata.name, d); drawRollout(); }
      reloadRollout(); // the phase counts
    },
  }, signal);
  state.client.watch(`/api/v1/namespaces/${encodeURIComponent(ns)}/applications${query({ search: name })}`, {
    event: (type, a) => {
      if (a.metadata.name !== name) return;
      if (type === 'DELETED') {
        fill(msgEl, h('p', { class: 'banner', role: 'status' }, 'This application was deleted. ', h('a', { href: '#/applications' }, 'Back to the applications.')));
        return;
      }
      app = a;
      showApp();
      loadEvents();
    },
  }, signal);
}

function selectorText(sel) {
  if (!sel) return '—';
  const parts = Object.entries(sel.matchLabels || {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions || []) parts.push(`${e.key} ${e.operator} (${(e.values || []).join(', ')})`);
  return parts.length ? parts.join(', ') : 'every device';
}

// --- deploy ------------------------------------------------------------------

// parseLabels reads "k=v, k2=v2" into an object; it throws on a pair without "=".
function parseLabels(s) {
  const out = {};
  for (const part of s.split(/[,\n]/).map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new Error(`"${part}" is not key=value`);
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function viewDeploy() {
  const ns = deployNamespace();
  if (!can('deployApplication') && !can('deployApplicationToDefaultNamespace')) {
    forbiddenPage('Deploy an application', 'deployApplication', `create applications in namespace "${state.self.namespace}"`);
    return;
  }
  const errEl = h('div', { id: 'deploy-error' });
  const fld = (id, label, control, help) => h('div', { class: 'field' }, h('label', { for: id }, label), control,
    help ? h('p', { class: 'help', id: `${id}-help` }, help) : null);
  const inp = (id, attrs) => h('input', Object.assign({ id, name: id, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `${id}-help` }, attrs));
  const form = h('form', { class: 'card deploy', novalidate: true },
    h('p', {}, 'Into namespace ', h('strong', {}, ns), '. Pick another one in the header to deploy elsewhere.'),
    h('fieldset', {}, h('legend', {}, 'Application'),
      fld('name', 'Name', inp('name', { required: true, pattern: '[a-z0-9]([-a-z0-9]*[a-z0-9])?', maxlength: 63 }), 'A DNS label: lower-case letters, digits and dashes.'),
      fld('version', 'Version', inp('version', { maxlength: 64 }), 'A label devices report, e.g. 1.2.'),
      fld('module', 'WebAssembly module', inp('module', { type: 'file', accept: '.wasm,application/wasm', required: true }), 'A .wasm file, at most 768 KiB.')),
    h('fieldset', {}, h('legend', {}, 'Targets'),
      fld('targets', 'Device names', h('textarea', { id: 'targets', name: 'targets', rows: 2, spellcheck: 'false', 'aria-describedby': 'targets-help' }), 'Separated by commas, spaces or lines.'),
      fld('selector', 'Label selector', inp('selector', {}), 'Devices whose labels match, e.g. site=plant-1, rack=r2. Give names, a selector, or both.')),
    h('fieldset', {}, h('legend', {}, 'Limits'),
      fld('memoryLimit', 'Memory limit (bytes)', inp('memoryLimit', { type: 'number', min: 0, step: 65536, placeholder: '65536' }), 'Linear memory, in 64 KiB pages; empty takes the default.'),
      fld('executionTimeout', 'Execution timeout', inp('executionTimeout', { placeholder: '30s' }), 'A duration such as 500ms, 30s or 1m.'),
      fld('maxStackSize', 'Stack size (bytes)', inp('maxStackSize', { type: 'number', min: 0, placeholder: '4096' }), 'WebAssembly call stack.')),
    h('fieldset', {}, h('legend', {}, 'Run state'),
      h('div', { class: 'radios' },
        h('label', {}, h('input', { type: 'radio', name: 'state', value: 'running', checked: true }), ' Running'),
        h('label', {}, h('input', { type: 'radio', name: 'state', value: 'stopped' }), ' Installed, stopped'))),
    h('button', { type: 'submit', class: 'primary' }, 'Deploy'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(errEl);
    const els = form.elements;
    const req = { name: els.name.value.trim() };
    const local = [];
    if (els.version.value.trim()) req.version = els.version.value.trim();
    const targets = els.targets.value.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
    if (targets.length) req.targetDevices = targets;
    try {
      const labels = parseLabels(els.selector.value);
      if (Object.keys(labels).length) req.selector = { matchLabels: labels };
    } catch (err) {
      local.push({ field: 'selector', detail: err.message });
    }
    const config = {};
    if (els.memoryLimit.value) config.memoryLimit = Number(els.memoryLimit.value);
    if (els.executionTimeout.value.trim()) config.executionTimeout = els.executionTimeout.value.trim();
    if (els.maxStackSize.value) config.maxStackSize = Number(els.maxStackSize.value);
    if (Object.keys(config).length) req.config = config;
    req.state = els.state.value;
    const file = els.module.files[0];
    if (!req.name) local.push({ field: 'name', detail: 'required' });
    if (!file) local.push({ field: 'module', detail: 'choose a .wasm file' });
    if (!req.targetDevices && !req.selector) local.push({ field: 'targetDevices', detail: 'give device names or a label selector' });
    if (local.length) {
      errEl.append(problemBox(new Problem(400, { title: 'Bad Request', detail: 'the form is incomplete', errors: local })));
      errEl.querySelector('h2').focus?.();
      return;
    }
    const body = new FormData();
    body.append('application', new Blob([JSON.stringify(req)], { type: 'application/json' }));
    body.append('module', file, file.name);
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      const app = await state.client.request('POST', `/api/v1/namespaces/${encodeURIComponent(ns)}/applications`, { form: body });
      toast(`Application ${app.metadata.name} created`);
      location.hash = `#/applications/${app.metadata.namespace}/${app.metadata.name}`;
    } catch (p) {
      errEl.append(problemBox(p, 'The application was not deployed.'));
      errEl.scrollIntoView();
    } finally {
      submit.disabled = false;
    }
  });
  render(h('p', { class: 'crumbs' }, h('a', { href: '#/applications' }, 'Applications')), h('h1', {}, 'Deploy an application'), errEl, form);
}

// --- pairing -----------------------------------------------------------------

async function viewPairing(signal) {
  const box = h('div');
  const errEl = h('div');
  render(h('h1', {}, 'Pairing window'), errEl, box);
  const show = (p) => {
    const rows = h('dl', { class: 'facts' },
      h('dt', {}, 'State'), h('dd', {}, p.open ? h('span', { class: 'badge phase-connected' }, 'Open') : h('span', { class: 'badge' }, 'Closed')),
      h('dt', {}, 'Open until'), h('dd', {}, p.open ? `${fmtTime(p.openUntil)} (${ago(p.openUntil)})` : '—'),
      h('dt', {}, 'Opened'), h('dd', {}, p.openedAt ? `${fmtTime(p.openedAt)} by ${p.openedBy || '?'}` : '—'),
      h('dt', {}, 'Token required'), h('dd', {}, p.tokenRequired ? 'yes' : 'no'));
    const parts = [h('section', { class: 'card wide', 'aria-labelledby': 'pw-h' }, h('h2', { id: 'pw-h' }, 'Enrollment of new devices'),
      h('p', {}, 'While the window is open, gateways enroll new devices that connect to them.'), rows,
      p.token ? h('p', { class: 'banner', role: 'status' }, 'Pairing token (shown once): ', h('code', { class: 'token' }, p.token)) : null)];
    if (can('openPairing')) {
      const dur = h('input', { id: 'duration', name: 'duration', value: '15m', size: 6, 'aria-describedby': 'duration-help' });
      const gen = h('input', { id: 'gentoken', name: 'generateToken', type: 'checkbox' });
      parts.push(h('form', { class: 'card wide', 'aria-labelledby': 'open-h', onsubmit: async (e) => {
        e.preventDefault();
        clear(errEl);
        try {
          show(await state.client.post('/api/v1/pairing/open', { duration: dur.value.trim() || '15m', generateToken: gen.checked }));
          toast('Pairing window opened');
        } catch (pr) {
          errEl.append(problemBox(pr, 'The window was not opened.'));
        }
      } },
      h('h2', { id: 'open-h' }, p.open ? 'Reopen' : 'Open'),
      h('div', { class: 'field' }, h('label', { for: 'duration' }, 'For'), dur, h('p', { class: 'help', id: 'duration-help' }, 'A duration up to 24h, e.g. 15m or 2h.')),
      h('div', { class: 'field check' }, gen, h('label', { for: 'gentoken' }, 'Require a pairing token')),
      h('button', { type: 'submit', class: 'primary' }, 'Open the window')));
    }
    if (can('closePairing') && p.open) {
      parts.push(h('p', {}, h('button', { type: 'button', class: 'danger', onclick: async () => {
        clear(errEl);
        try {
          show(await state.client.post('/api/v1/pairing/close', {}));
          toast('Pairing window closed');
        } catch (pr) {
          errEl.append(problemBox(pr, 'The window was not closed.'));
        }
      } }, 'Close the window now')));
    }
    fill(box, ...parts);
  };
  try {
    show(await state.client.get('/api/v1/pairing', { signal }));
  } catch (p) {
    if (p.name === 'AbortError') return;
    errEl.append(problemBox(p, 'The pairing window could not be read.'));
  }
}

// --- start -------------------------------------------------------------------

function start() {
  const nsIn = document.getElementById('ns');
  nsIn.value = state.ns;
  const apply = async () => {
    const v = nsIn.value.trim();
    if (v === state.ns) return;
    state.ns = v;
    sessionStorage.setItem(NS_KEY, v);
    if (state.client) {
      try {
        await loadSelf();
      } catch {
        // route shows the failure
        state.self = null;
      }
    }
    route();
  };
  nsIn.addEventListener('change', apply);
  nsIn.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
  document.getElementById('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.client = null;
    state.self = null;
    location.hash = '#/signin';
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
