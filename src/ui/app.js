// The /ui page: sign in with a pasted token, a live orders table, an order's detail (stages,
// the machine diagram with its current state lit, cancel and retry) and the inventory.
// Plain modules, no build step; everything is fetched from this server.
import { drawMachine, layoutMachine } from './diagram.js';
import { readEventStream } from './sse.js';

const API = '/api/v1';
const TOKEN_KEY = 'ordersaga.token';
const CANCELLABLE = new Set(['placing', 'reserving', 'paying']);
const $ = (sel) => document.querySelector(sel);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  claims: null,
  orders: new Map(), // order_id → view
  nextCursor: null,
  filter: '',
  feed: null, // AbortController of the list feed
  detail: null, // { id, view, stream: AbortController, visited: Set, lastSeq }
  machine: null, // dagre layout of the order machine
  inventoryTimer: null,
};

// --- helpers ---------------------------------------------------------------------------

function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
  } catch {
    return null;
  }
}

function show(message, kind = 'error') {
  const box = $('#message');
  box.textContent = message;
  box.className = kind;
  box.hidden = !message;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${API}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401) signOut('Your token was refused: sign in again.');
  if (!res.ok) throw Object.assign(new Error(data?.detail ?? `HTTP ${res.status}`), { status: res.status, problem: data });
  return data;
}

const money = (cents, currency = 'USD') => (cents === null || cents === undefined ? '—' : new Intl.NumberFormat('en', { style: 'currency', currency }).format(cents / 100));
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '—');

function td(text, className) {
  const cell = document.createElement('td');
  cell.textContent = text;
  if (className) cell.className = className;
  return cell;
}

// --- sign in ---------------------------------------------------------------------------

function signIn(token) {
  state.token = token;
  state.claims = claimsOf(token);
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#sign-in-panel').hidden = true;
  $('#signed-in').hidden = false;
  $('#sign-out').hidden = false;
  $('#who').textContent = state.claims ? `${state.claims.sub} (${isAdmin() ? 'admin' : 'user'})` : '';
  show('');
  void start();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.feed?.abort();
  state.feed = null;
  closeDetail();
  clearTimeout(state.inventoryTimer);
  $('#sign-in-panel').hidden = false;
  $('#signed-in').hidden = true;
  $('#sign-out').hidden = true;
  $('#live').hidden = true;
  $('#who').textContent = '';
  if (message) show(message);
}

const isAdmin = () => {
  const role = state.claims?.role ?? state.claims?.roles;
  return role === 'admin' || (Array.isArray(role) && role.includes('admin'));
};

async function start() {
  try {
    await Promise.all([connectFeed(), loadInventory()]);
  } catch (err) {
    show(err.message);
  }
}

// --- orders table, kept live by the list feed -------------------------------------------

async function loadOrders({ more = false } = {}) {
  const params = new URLSearchParams({ limit: '25' });
  if (state.filter) params.set('status', state.filter);
  if (more && state.nextCursor) params.set('cursor', state.nextCursor);
  const page = await api('GET', `/pipeline/orders?${params}`);
  if (!more) state.orders.clear();
  for (const view of page.items) upsert(view, { render: false });
  state.nextCursor = page.next_cursor;
  renderOrders();
}

/** Keeps the newer of two views of an order (a change may arrive before or after the list read). */
function upsert(view, { render = true } = {}) {
  const known = state.orders.get(view.order_id);
  if (known && known.updated_at > view.updated_at) return;
  if (state.filter && view.status !== state.filter) state.orders.delete(view.order_id);
  else state.orders.set(view.order_id, view);
  if (render) renderOrders();
}

function renderOrders() {
  // Ids sort by creation time: newest first.
  const rows = [...state.orders.values()].sort((a, b) => (a.order_id < b.order_id ? 1 : -1));
  const body = $('#orders tbody');
  body.replaceChildren(
    ...rows.map((v) => {
      const tr = document.createElement('tr');
      tr.dataset.orderId = v.order_id;
      if (state.detail?.id === v.order_id) tr.className = 'selected';
      tr.append(
        td(v.order_id, 'mono'),
        td(v.user_id),
        td(v.status, `status status-${v.status}`),
        td(v.state, 'state'),
        td(money(v.order.total_cents, v.order.currency)),
        td(time(v.created_at)),
        td(time(v.updated_at)),
      );
      tr.addEventListener('click', () => openDetail(v.order_id));
      return tr;
    }),
  );
  $('#more').hidden = !state.nextCursor;
}

/**
 * The list feed (GET /pipeline/events): connect first, then load the list, so no change falls
 * between them; reconnect with a growing pause when the connection drops, and reload the list
 * then (the feed does not replay).
 */
async function connectFeed() {
  state.feed?.abort();
  const abort = new AbortController();
  state.feed = abort;
  let pause = 500;
  let firstLoad = true;
  while (!abort.signal.aborted && state.token) {
    let opened;
    const open = new Promise((resolve) => (opened = resolve));
    const reading = readEventStream(`${API}/pipeline/events`, {
      token: state.token,
      signal: abort.signal,
      onOpen: () => opened(true),
      onEvent: (e) => {
        if (e.type !== 'change') return;
        const change = JSON.parse(e.data);
        upsert(change.view);
        scheduleInventory();
      },
    });
    const first = await Promise.race([open, reading]);
    if (first === true) {
      $('#live').hidden = false;
      pause = 500;
      firstLoad = false;
      await loadOrders().catch((err) => show(err.message));
    }
    const result = await reading;
    $('#live').hidden = true;
    if (abort.signal.aborted || result.ended === 'aborted') return;
    if (result.status === 401) return signOut('Your token was refused: sign in again.');
    if (firstLoad) {
      // Could not connect at all (e.g. too many streams): still show the list, without live updates.
      firstLoad = false;
      await loadOrders().catch((err) => show(err.message));
    }
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 10_000);
  }
}

// --- one order's detail, kept live by its own stream ------------------------------------

function closeDetail() {
  state.detail?.stream.abort();
  state.detail = null;
  $('#detail').hidden = true;
  renderOrders();
}

async function openDetail(id) {
  if (state.detail?.id === id) return;
  closeDetail();
  const detail = { id, view: state.orders.get(id) ?? null, stream: new AbortController(), visited: new Set(), lastSeq: null };
  state.detail = detail;
  $('#detail').hidden = false;
  renderOrders();
  if (detail.view) renderDetail();
  try {
    state.machine ??= layoutMachine(await (await fetch('/ui/order-machine.json')).json());
    const history = await api('GET', `/pipeline/orders/${id}/history?limit=200`);
    for (const change of history.items) detail.visited.add(change.state);
    if (state.detail === detail) renderDetail();
  } catch (err) {
    show(err.message);
  }
  void followOrder(detail);
}

async function followOrder(detail) {
  let pause = 500;
  while (state.detail === detail && !detail.stream.signal.aborted) {
    const result = await readEventStream(`${API}/pipeline/orders/${detail.id}/events`, {
      token: state.token,
      lastEventId: detail.lastSeq,
      signal: detail.stream.signal,
      onEvent: (e) => {
        if (e.type !== 'state') return;
        const view = JSON.parse(e.data);
        if (e.id !== undefined) detail.lastSeq = Number(e.id);
        detail.view = view;
        detail.visited.add(view.state);
        upsert(view);
        if (state.detail === detail) renderDetail();
      },
    });
    // Ended after a final state, or nothing left to send: done. Refused: say so and stop.
    if (result.ended === 'aborted' || result.ended === 'no-content') return;
    if (result.ended === 'closed' && ['completed', 'failed', 'cancelled'].includes(detail.view?.status)) return;
    if (result.status === 404) return show(`Order ${detail.id} not found.`);
    if (result.status === 401) return signOut('Your token was refused: sign in again.');
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 10_000);
  }
}

function renderDetail() {
  const { view, visited } = state.detail;
  if (!view) return;
  $('#detail-id').textContent = view.order_id;
  const status = $('#detail-status');
  status.textContent = view.status;
  status.className = `status status-${view.status}`;
  status.dataset.state = view.state;
  $('#detail-summary').textContent =
    `${view.user_id} · ${view.order.items.map((i) => `${i.quantity} × ${i.sku}`).join(', ')} · ${money(view.order.total_cents, view.order.currency)} · at ${view.state}` +
    (view.failure ? ` · ${view.failure.stage}: ${view.failure.code} (${view.failure.message})` : '');
  $('#cancel-btn').hidden = !(view.status === 'processing' && CANCELLABLE.has(view.state));
  $('#retry-btn').hidden = !(isAdmin() && view.status === 'compensation_failed');

  $('#timeline').replaceChildren(
    ...view.stages.map((s) => {
      const li = document.createElement('li');
      li.className = `stage stage-${s.status}`;
      li.dataset.stage = s.name;
      const head = document.createElement('div');
      head.textContent = `${s.name}: ${s.status}${s.attempts > 0 ? ` · ${s.attempts} attempt${s.attempts === 1 ? '' : 's'}` : ''}`;
      const when = document.createElement('div');
      when.className = 'muted';
      when.textContent = s.started_at ? `${time(s.started_at)} → ${s.ended_at ? time(s.ended_at) : '…'}` : '';
      li.append(head, when);
      if (s.error) {
        const err = document.createElement('div');
        err.className = 'error-text';
        err.textContent = `${s.error.code}: ${s.error.message}`;
        li.append(err);
      }
      return li;
    }),
  );
  if (state.machine) drawMachine($('#diagram'), state.machine, { current: view.state, visited });
}

async function act(action) {
  const id = state.detail?.id;
  if (!id) return;
  try {
    await api('POST', `/pipeline/orders/${id}/${action}`);
    show(`${action === 'cancel' ? 'Cancel' : 'Retry'} sent for ${id}.`, 'info');
  } catch (err) {
    show(err.message);
  }
}

// --- inventory -------------------------------------------------------------------------

async function loadInventory() {
  const { items } = await api('GET', '/inventory');
  $('#inventory tbody').replaceChildren(
    ...items.map((p) => {
      const tr = document.createElement('tr');
      tr.dataset.sku = p.sku;
      tr.append(td(p.sku, 'mono'), td(p.name), td(money(p.price_cents)), td(String(p.available), 'available'), td(String(p.reserved), 'reserved'), td(String(p.sold), 'sold'));
      return tr;
    }),
  );
}

/** Stock moves with orders: reload it shortly after changes, at most twice a second. */
function scheduleInventory() {
  if (state.inventoryTimer) return;
  state.inventoryTimer = setTimeout(() => {
    state.inventoryTimer = null;
    if (state.token) loadInventory().catch((err) => show(err.message));
  }, 500);
}

// --- wiring ----------------------------------------------------------------------------

$('#sign-in-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('#token-input').value.trim();
  if (!token) return show('Paste a token first.');
  $('#token-input').value = '';
  signIn(token);
});
$('#sign-out').addEventListener('click', () => signOut());
$('#status-filter').addEventListener('change', (e) => {
  state.filter = e.target.value;
  loadOrders().catch((err) => show(err.message));
});
$('#more').addEventListener('click', () => loadOrders({ more: true }).catch((err) => show(err.message)));
$('#close-detail').addEventListener('click', closeDetail);
$('#cancel-btn').addEventListener('click', () => act('cancel'));
$('#retry-btn').addEventListener('click', () => act('retry'));

if (state.token) signIn(state.token);
