// reelsift moderator console. Plain JavaScript, no build step, no third-party code.
//
// Everything the console shows or changes goes through the public JSON API with the
// moderator's key in an Authorization header. Item content is only ever inserted as
// text (textContent), never as HTML, so a hostile item cannot script the page.

const CONFIG = (() => {
  const data = document.body.dataset;
  return {
    apiBase: data.apiBase || '/v1',
    base: data.base || '',
    view: data.view || 'overview',
    itemId: data.itemId || '',
    tier2Roles: (data.tier2Roles || '').split(' ').filter(Boolean),
    blurLevels: JSON.parse(data.blurLevels || '{}'),
    defaultBlur: data.defaultBlur || 'medium',
  };
})();

const KEY_STORAGE = 'reelsift.console.key';
const SETTINGS_STORAGE = 'reelsift.console.settings';
const DECIDED_STORAGE = 'reelsift.console.decided.';
const MAX_OPEN_PAGES = 4; // 4 x 500 open tasks scanned for the oldest one
const NUMBER_KEYS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0'];
const WAITING_ROWS = 50; // waiting tasks listed on the overview

const state = {
  key: null,
  me: null,
  view: null,
  policy: null,
  task: null,
  readonly: false, // the task on screen is someone else's (or not for me): view only
  item: null,
  history: [],
  leaseDeadline: null, // client-clock ms at which the lease ends
  leaseTotal: 0, // ms the lease ran when claimed
  serverOffset: 0, // server clock minus client clock, from the Date header
  heartbeatTimer: null,
  countdownTimer: null,
  leaseLost: false,
  revealed: false,
  panel: null, // 'reject' | 'escalate' | null
  overlay: null, // 'help' | 'settings' | null
  busy: false,
  mediaUrls: [],
  codeOrder: [],
};

// -- small helpers ------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'text') el.textContent = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

function setVar(el, name, value) {
  // CSSOM writes are allowed under the page's CSP; style attributes are not.
  el.style.setProperty(name, String(value));
}

function serverNow() {
  return Date.now() + state.serverOffset;
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function formatClock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, '0')}`;
}

function formatMs(ms) {
  if (!Number.isFinite(ms)) return '?';
  const total = Math.floor(ms / 1000);
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, '0')}`;
}

function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

function ageSince(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : (serverNow() - t) / 1000;
}

function score(value) {
  return value === null || value === undefined ? 'n/a' : Number(value).toFixed(2);
}

function localDay() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

// -- settings ------------------------------------------------------------------------

function loadSettings() {
  const defaults = { blur: CONFIG.defaultBlur, grey: true, autoNext: true };
  try {
    return { ...defaults, ...JSON.parse(localStorage.getItem(SETTINGS_STORAGE) || '{}') };
  } catch {
    return defaults;
  }
}

let settings = loadSettings();

function applySettings() {
  const radius = CONFIG.blurLevels[settings.blur] ?? CONFIG.blurLevels[CONFIG.defaultBlur] ?? 16;
  setVar(document.documentElement, '--media-blur', `${radius}px`);
  setVar(document.documentElement, '--media-grey', settings.grey ? '1' : '0');
  $('#setting-blur').value = settings.blur;
  $('#setting-grey').checked = settings.grey;
  $('#setting-autonext').checked = settings.autoNext;
  $('#auto-next').checked = settings.autoNext;
}

function saveSettings(patch) {
  settings = { ...settings, ...patch };
  localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(settings));
  applySettings();
}

// -- notices: calm, one at a time, errors stay until dismissed ----------------------

let noticeTimer = null;

function notify(message, { kind = 'info', code = null } = {}) {
  const box = $('#notice');
  $('#notice-text').textContent = message;
  const codeEl = $('#notice-code');
  codeEl.hidden = !code;
  codeEl.textContent = code || '';
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(noticeTimer);
  if (kind === 'info') noticeTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

function hideNotice() {
  $('#notice').hidden = true;
}

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const HINTS = {
  0: 'The review API could not be reached; nothing was changed. Check the connection and try again.',
  409: 'Nothing was changed.',
  500: 'The server had a problem; nothing was changed. Try again in a moment.',
  503: 'The server is busy or a model is unavailable; try again in a moment.',
};

function showError(error, doing) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    notify(`${doing} did not work: ${error.message || error}`, { kind: 'error' });
    return;
  }
  const hint = HINTS[error.status] || (error.status >= 500 ? HINTS[500] : '');
  const text = [`${doing} did not work: ${error.message}`, hint].filter(Boolean).join(' ');
  notify(text, { kind: 'error', code: error.code });
}

// -- the API -------------------------------------------------------------------------

async function api(method, path, body, key = state.key) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined && body !== null) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(CONFIG.apiBase + path, {
      method,
      headers,
      body: body === undefined || body === null ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (error) {
    throw new ApiError(0, 'network', 'the server did not answer');
  }
  const date = Date.parse(response.headers.get('Date') || '');
  if (!Number.isNaN(date)) state.serverOffset = date - Date.now();
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = (data && data.code) || `HTTP ${response.status}`;
    const message = (data && data.message) || response.statusText || 'unexpected answer';
    const error = new ApiError(response.status, code, message, data && data.details);
    if (response.status === 401 && key === state.key && state.key) {
      signOut({ release: false });
      notify(`Your key was refused: ${message}. Please sign in again.`, { kind: 'error', code });
    }
    throw error;
  }
  return data;
}

async function fetchMediaUrl(sha256) {
  const response = await fetch(`${CONFIG.apiBase}/media/${encodeURIComponent(sha256)}`, {
    headers: { Authorization: `Bearer ${state.key}` },
    cache: 'no-store',
    credentials: 'omit',
  });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).message || message; } catch { /* not JSON */ }
    throw new ApiError(response.status, `HTTP ${response.status}`, message);
  }
  const url = URL.createObjectURL(await response.blob());
  state.mediaUrls.push(url);
  return url;
}

// -- views and navigation -------------------------------------------------------------

// Each screen change takes a new number; a slow load that finishes after the moderator
// moved on sees a newer number and drops its result instead of taking the screen back.
let navEpoch = 0;

function nextEpoch() {
  navEpoch += 1;
  return navEpoch;
}

function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll('.view')) {
    section.hidden = section.id !== `view-${view}`;
  }
  document.body.dataset.current = view;
  $('#nav').hidden = view === 'signin';
  // Focus left in a hidden field (the key input, the lookup box) would swallow shortcuts.
  const section = $(`#view-${view}`);
  if (view !== 'signin' && !section.contains(document.activeElement)) section.focus({ preventScroll: true });
}

function pathFor(view, itemId) {
  return view === 'history' ? `${CONFIG.base}/history/${encodeURIComponent(itemId)}` : `${CONFIG.base}/`;
}

function navigate(view, itemId) {
  const path = pathFor(view, itemId);
  if (location.pathname !== path) history.pushState({ view, itemId }, '', path);
}

function currentRoute() {
  const path = location.pathname.slice(CONFIG.base.length);
  const match = path.match(/^\/history\/(.+)$/);
  return match ? { view: 'history', itemId: decodeURIComponent(match[1]) } : { view: 'overview' };
}

async function route() {
  if (!state.key) return;
  const { view, itemId } = currentRoute();
  if (view === 'history') await openHistory(itemId, { push: false });
  else if (state.task) { nextEpoch(); showTask(); } else await openOverview({ push: false, resume: true });
}

// -- sign in and out -------------------------------------------------------------------

async function signIn(rawKey) {
  const key = rawKey.trim();
  if (!key) {
    notify('Enter your API key.', { kind: 'error' });
    return;
  }
  let me;
  try {
    me = await api('GET', '/me', null, key);
    // The server decides who may review: ask it rather than trust a role list here.
    await api('GET', '/review/stats', null, key);
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      const who = me ? `“${me.name}” (role ${me.role})` : 'This key';
      notify(`${who} may not use the review queue: ${error.message}. Sign in with a moderator key.`,
        { kind: 'error', code: error.code });
    } else if (error instanceof ApiError && error.status === 401) {
      notify(`That key was not accepted: ${error.message}.`, { kind: 'error', code: error.code });
    } else {
      showError(error, 'Signing in');
    }
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  state.key = key;
  state.me = me;
  $('#key-input').value = '';
  hideNotice();
  afterSignIn();
  await route();
}

function afterSignIn() {
  $('#who').textContent = `${state.me.name} · ${state.me.role.replace('_', ' ')}`;
  $('#nav').hidden = false;
}

async function signOut({ release = true } = {}) {
  const task = state.readonly ? null : state.task;
  const key = state.key;
  stopTask();
  if (release && task && key) {
    try { await api('POST', `/review/tasks/${task.id}/release`, null, key); } catch { /* lease lapses anyway */ }
  }
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  state.me = null;
  state.policy = null;
  closeOverlay();
  show('signin');
  $('#key-input').focus();
}

// -- overview --------------------------------------------------------------------------

function myDecisionsToday() {
  if (!state.me) return 0;
  try {
    const saved = JSON.parse(localStorage.getItem(DECIDED_STORAGE + state.me.name) || '{}');
    return saved.day === localDay() ? saved.count : 0;
  } catch {
    return 0;
  }
}

function countDecision() {
  const count = myDecisionsToday() + 1;
  localStorage.setItem(DECIDED_STORAGE + state.me.name, JSON.stringify({ day: localDay(), count }));
}

// Open tasks, a page of 500 at a time, up to MAX_OPEN_PAGES pages.
async function openTasks() {
  const tasks = [];
  for (let page = 0; page < MAX_OPEN_PAGES; page += 1) {
    const batch = await api('GET', `/review/tasks?status=open&limit=500&offset=${page * 500}`);
    tasks.push(...batch);
    if (batch.length < 500) return { tasks, complete: true };
  }
  return { tasks, complete: false };
}

function oldestAge({ tasks, complete }) {
  let oldest = null;
  for (const task of tasks) {
    const age = ageSince(task.created_at);
    if (age !== null && (oldest === null || age > oldest)) oldest = age;
  }
  return { age: oldest, complete };
}

async function openOverview({ push = true, resume = false } = {}) {
  if (push) navigate('overview');
  if (state.readonly) stopTask(); // leaving a read-only view lets it go
  show('overview');
  const me = state.me;
  const epoch = nextEpoch();
  try {
    const [stats, open, held] = await Promise.all([
      api('GET', '/review/stats'),
      openTasks(),
      api('GET', `/review/tasks?status=claimed&claimed_by=${encodeURIComponent(me.name)}&limit=1`),
    ]);
    if (epoch !== navEpoch) return; // the moderator moved on meanwhile
    renderStats(stats, oldestAge(open));
    const hint = $('#held-hint');
    if (held.length && !state.task && resume) {
      await openTask(held[0]);
      return;
    }
    hint.hidden = !held.length;
    if (held.length) hint.textContent = `You hold task #${held[0].id} (item ${held[0].item_id}); “Claim next” takes you back to it.`;
    renderWaiting(open);
    await renderTier2(open.tasks);
  } catch (error) {
    if (state.key) showError(error, 'Loading the queue');
  }
}

function renderStats(stats, oldest) {
  $('#stat-open').textContent = String(stats.open_total);
  // The server knows the exact oldest wait; the scan of open tasks is the fallback.
  const oldestAgeS = stats.oldest_open_age_s ?? oldest.age;
  $('#stat-oldest').textContent = oldestAgeS === null || oldestAgeS === undefined ? 'none waiting'
    : `${stats.oldest_open_age_s != null || oldest.complete ? '' : '≥ '}${formatDuration(oldestAgeS)}`;
  $('#stat-age').textContent = `${formatDuration(stats.age_p50_s)} / ${formatDuration(stats.age_p95_s)}`;
  $('#stat-hour').textContent = String(stats.decisions_last_hour);
  $('#stat-mine').textContent = String(stats.my_decisions_today ?? myDecisionsToday());
  const rows = new Map();
  for (const row of stats.depth) {
    const name = row.category || '';
    if (!rows.has(name)) rows.set(name, { 1: [0, 0], 2: [0, 0] });
    const tiers = rows.get(name);
    tiers[row.tier] = [row.unclaimed, row.claimed];
  }
  const tbody = clear($('#depth-table tbody'));
  if (!rows.size) {
    tbody.append(h('tr', {}, h('td', { colspan: 5, class: 'muted', text: 'The queue is empty.' })));
  }
  for (const [name, tiers] of [...rows.entries()].sort()) {
    tbody.append(h('tr', { dataset: { category: name || 'none' } },
      h('th', { scope: 'row' }, name ? categoryChip(name) : h('span', { class: 'muted', text: 'no category (QA sample, reports, appeals)' })),
      h('td', { text: tiers[1][0] }), h('td', { text: tiers[1][1] }),
      h('td', { text: tiers[2][0] }), h('td', { text: tiers[2][1] })));
  }
}

async function renderTier2(openList) {
  const section = $('#tier2');
  const senior = CONFIG.tier2Roles.includes(state.me.role);
  section.hidden = !senior;
  if (!senior) return;
  let tasks;
  try {
    tasks = await api('GET', '/review/tasks?status=open&tier=2&limit=100');
  } catch (error) {
    // Some API versions refuse the tier filter (422): filter the open list here instead.
    if (!(error instanceof ApiError) || error.status !== 422) throw error;
    tasks = openList.filter((task) => task.tier === 2);
  }
  const tbody = clear($('#tier2-table tbody'));
  if (!tasks.length) {
    tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'Nothing escalated right now.' })));
  }
  for (const task of tasks) {
    tbody.append(h('tr', { dataset: { taskId: task.id } },
      h('td', { text: `#${task.id}` }),
      h('td', {}, historyLink(task.item_id)),
      h('td', {}, task.category ? categoryChip(task.category) : '–'),
      h('td', { text: task.note || '–' }),
      h('td', { text: formatDuration(ageSince(task.created_at)) }),
      h('td', { text: task.claimed_by || '–' })));
  }
}

function isSenior() {
  return Boolean(state.me) && CONFIG.tier2Roles.includes(state.me.role);
}

// Open tasks this moderator may take, best first, one line each. The API lists them by
// priority; tier-2 tasks are left out for moderators who may not take them.
function renderWaiting({ tasks, complete }) {
  const mine = tasks.filter((task) => task.tier === 1 || isSenior());
  const shown = mine.slice(0, WAITING_ROWS);
  const total = `${mine.length}${complete ? '' : '+'}`;
  $('#waiting-count').textContent = shown.length < mine.length
    ? `the first ${shown.length} of ${total}` : `${mine.length} open`;
  const tbody = clear($('#waiting-table tbody'));
  if (!shown.length) {
    tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'Nothing is waiting.' })));
  }
  for (const task of shown) {
    const heldBy = task.claimed_by;
    const held = heldBy ? (heldBy === state.me.name ? 'me' : 'other') : 'free';
    const line = task.preview || task.item_id;
    const open = h('button', {
      type: 'button', class: 'open-task', text: line, title: `${line}\n(item ${task.item_id})`,
      'aria-label': `Open task ${task.id}: ${line}`,
      onclick: () => openListedTask(task),
    });
    const why = [task.reason.replace('_', ' '), task.tier === 2 ? 'tier 2' : null,
      task.report_count ? `${task.report_count} report${task.report_count === 1 ? '' : 's'}` : null];
    const status = held === 'free' ? (task.excluded_moderator === state.me.name ? 'your decision is appealed' : 'free')
      : held === 'me' ? 'held by you' : `in review: ${heldBy}`;
    tbody.append(h('tr', { dataset: { taskId: task.id, itemId: task.item_id, held } },
      h('td', { class: 'prio', text: task.priority.toFixed(1) }),
      h('td', { class: 'preview-cell' }, open),
      h('td', { class: 'cats', title: task.categories.join(', ') }, categoryChips(task.categories, 3)),
      h('td', { text: why.filter(Boolean).join(' · ') }),
      h('td', { text: formatDuration(ageSince(task.created_at)) }),
      h('td', { class: held === 'free' ? null : 'muted', text: status })));
  }
}

// Opening a task from the list: a free one is claimed (and so leaves the queue for
// everyone else); one someone else holds, or one this moderator may not decide, opens
// read only, without a lease, so looking never takes work from a colleague.
async function openListedTask(listed) {
  if (state.busy) return;
  if (state.task && !state.readonly) {
    showTask();
    if (state.task.id !== listed.id && !state.leaseLost) notify(`Decide, skip or release task #${state.task.id} first.`);
    return;
  }
  const me = state.me.name;
  if (listed.claimed_by && listed.claimed_by !== me) {
    await openReadOnly(listed.id, `${listed.claimed_by} is reviewing this task; you see it read only.`);
    return;
  }
  state.busy = true;
  nextEpoch();
  try {
    const task = await api('POST', `/review/tasks/${listed.id}/claim`);
    await openTask(task);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 409 || error.status === 403)
        && !(error.details && error.details.held_task_id)) {
      state.busy = false;
      await openReadOnly(listed.id, `Read only: ${error.message}.`);
      return;
    }
    showError(error, `Opening task #${listed.id}`);
  } finally {
    state.busy = false;
  }
}

async function openReadOnly(taskId, why) {
  let task;
  try {
    task = await api('GET', `/review/tasks/${taskId}`);
  } catch (error) {
    showError(error, `Opening task #${taskId}`);
    return;
  }
  await openTask(task, { readonly: why });
}

function historyLink(itemId) {
  return h('a', {
    href: pathFor('history', itemId),
    text: itemId,
    onclick: (event) => { event.preventDefault(); openHistory(itemId); },
  });
}

// At most ``limit`` chips (most severe first, as the policy lists them), then "+N".
function categoryChips(categories, limit) {
  if (!categories.length) return [h('span', { class: 'muted', text: '–' })];
  const chips = categories.slice(0, limit).map((c) => categoryChip(c));
  if (categories.length > limit) chips.push(h('span', { class: 'muted more', text: `+${categories.length - limit}` }));
  return chips;
}

function categoryChip(category) {
  return h('span', { class: `cat cat-${category}`, text: category.replace('_', ' ') });
}

// -- claiming and the task view ------------------------------------------------------

async function claimNext() {
  if (state.busy) return;
  if (state.task && state.readonly) stopTask();
  if (state.task) {
    showTask();
    if (!state.leaseLost) notify(`Decide, skip or release task #${state.task.id} first.`);
    return;
  }
  state.busy = true;
  nextEpoch(); // an overview still loading must not take the screen back
  try {
    const task = await api('POST', '/review/claim');
    if (!task) {
      notify('Nothing is waiting for you right now. The overview refreshes when you press n again.');
      await openOverview();
      return;
    }
    await openTask(task);
  } catch (error) {
    showError(error, 'Claiming a task');
  } finally {
    state.busy = false;
  }
}

async function loadPolicy() {
  if (!state.policy) state.policy = await api('GET', '/review/policy');
  return state.policy;
}

async function openTask(task, { readonly = null } = {}) {
  const epoch = nextEpoch();
  const [item, history] = await Promise.all([
    api('GET', `/items/${encodeURIComponent(task.item_id)}`).catch((error) => {
      showError(error, `Loading item ${task.item_id}`);
      return null;
    }),
    api('GET', `/review/items/${encodeURIComponent(task.item_id)}/history`).catch(() => []),
    loadPolicy().catch(() => null),
  ]);
  if (epoch !== navEpoch) return;
  stopTask();
  state.task = task;
  state.item = item;
  state.history = history;
  state.leaseLost = false;
  state.revealed = false;
  state.readonly = Boolean(readonly);
  renderTask();
  const banner = $('#task-readonly');
  banner.hidden = !readonly;
  banner.textContent = readonly || '';
  $('#view-task').dataset.mode = readonly ? 'readonly' : 'claimed';
  if (readonly) {
    setDecisionEnabled(false);
    $('#lease').dataset.state = 'readonly';
    $('#lease-time').textContent = 'read only';
  } else {
    startLease(task);
  }
  navigate('overview');
  showTask();
}

function showTask() {
  show('task');
  $('#view-task').focus({ preventScroll: true });
}

function stopTask() {
  clearInterval(state.heartbeatTimer);
  clearInterval(state.countdownTimer);
  state.heartbeatTimer = null;
  state.countdownTimer = null;
  for (const url of state.mediaUrls) URL.revokeObjectURL(url);
  state.mediaUrls = [];
  closePanel();
  state.task = null;
  state.readonly = false;
  state.item = null;
  state.history = [];
  state.leaseDeadline = null;
  const view = $('#view-task');
  delete view.dataset.taskId;
  delete view.dataset.itemId;
}

function setDecisionEnabled(enabled) {
  for (const id of ['#approve', '#reject', '#escalate', '#reject-submit', '#escalate-submit', '#skip', '#release']) {
    $(id).disabled = !enabled;
  }
}

function renderTask() {
  const { task, item } = state;
  const view = $('#view-task');
  view.dataset.taskId = String(task.id);
  view.dataset.itemId = task.item_id;
  view.dataset.revealed = 'false';
  $('#reveal').setAttribute('aria-pressed', 'false');
  $('#reveal').firstChild.textContent = 'Unblur media ';
  setDecisionEnabled(true);

  $('#task-title').textContent = `Task #${task.id} · ${item ? item.title || item.id : task.item_id}`;
  const meta = [
    `item ${task.item_id}`,
    item ? `by ${item.creator_id}` : null,
    item ? `state ${item.state.replace('_', ' ')}` : null,
    `tier ${task.tier}`,
    task.reason.replace('_', ' '),
    `priority ${task.priority.toFixed(1)}`,
    `waiting ${formatDuration(ageSince(task.created_at))}`,
    task.report_count ? `${task.report_count} report${task.report_count === 1 ? '' : 's'}` : null,
    item && item.tags.length ? `tags: ${item.tags.join(', ')}` : null,
  ].filter(Boolean);
  $('#task-meta').textContent = meta.join(' · ');
  const reasons = clear($('#task-reasons'));
  for (const reason of task.reasons) reasons.append(h('li', { text: reason }));
  const note = $('#task-note');
  note.hidden = !task.note;
  note.textContent = task.note ? `Escalation note: ${task.note}` : '';

  const analysis = (item && item.analysis) || {};
  renderDocument(item, analysis.risk || []);
  renderMedia(analysis.media || []);
  renderRiskBars(analysis.risk || []);
  renderLabels(analysis.labels || []);
  renderEntities((analysis.text && analysis.text.entities) || [], (analysis.text && analysis.text.keywords) || []);
  renderPast(state.history);
  buildCodeList();
}

// The document the analyzers saw: title + "\n" + text, or the text alone.
function documentOf(item) {
  if (!item) return { doc: '', titleLength: 0 };
  return item.title
    ? { doc: `${item.title}\n${item.text}`, titleLength: item.title.length }
    : { doc: item.text, titleLength: -1 };
}

function textSpans(risk, docLength) {
  const spans = [];
  for (const entry of risk) {
    for (const ev of entry.evidence || []) {
      if (ev.kind !== 'text_span' || !Number.isInteger(ev.start) || !Number.isInteger(ev.end)) continue;
      if (typeof ev.detail === 'string' && ev.detail.startsWith('file ')) continue; // a media file's own text
      if (ev.start < 0 || ev.end > docLength || ev.end <= ev.start) continue;
      spans.push({ start: ev.start, end: ev.end, category: entry.category, score: entry.score, detail: ev.detail });
    }
  }
  return spans;
}

function renderDocument(item, risk) {
  const titleEl = clear($('#doc-title'));
  const bodyEl = clear($('#doc-body'));
  const legend = clear($('#doc-legend'));
  if (!item) {
    bodyEl.append(h('p', { class: 'muted', text: 'The item could not be loaded.' }));
    return;
  }
  const { doc, titleLength } = documentOf(item);
  const spans = textSpans(risk, doc.length);
  const cuts = new Set([0, doc.length]);
  if (titleLength >= 0) { cuts.add(titleLength); cuts.add(titleLength + 1); }
  for (const span of spans) { cuts.add(span.start); cuts.add(span.end); }
  const points = [...cuts].sort((a, b) => a - b);
  // Runs of adjacent segments flagged for the same categories become one mark.
  let run = null;
  const flush = () => {
    if (!run) return;
    const categories = [...run.categories];
    const title = run.details.join('\n');
    const mark = h('mark', {
      class: `risk cat-${categories[0]}`,
      title,
      dataset: { categories: categories.join(' '), start: run.start, end: run.end },
    }, doc.slice(run.start, run.end));
    const tag = h('span', { class: 'risk-tag', 'aria-label': `flagged as ${categories.join(', ')}` },
      ...categories.map((c) => categoryChip(c)));
    run.target.append(mark, tag);
    run = null;
  };
  for (let i = 0; i < points.length - 1; i += 1) {
    const [a, b] = [points[i], points[i + 1]];
    if (a === b) continue;
    const inTitle = titleLength >= 0 && a < titleLength;
    if (titleLength >= 0 && a === titleLength) { flush(); continue; } // the joining newline
    const target = inTitle ? titleEl : bodyEl;
    const covering = spans.filter((s) => s.start <= a && s.end >= b);
    if (!covering.length) {
      flush();
      target.append(doc.slice(a, b));
      continue;
    }
    const categories = new Set(covering.map((s) => s.category));
    const key = [...categories].sort().join(' ');
    if (run && run.key === key && run.end === a && run.target === target) {
      run.end = b;
    } else {
      flush();
      run = { key, categories, start: a, end: b, target, details: [] };
    }
    for (const s of covering) {
      const line = `${s.category} ${score(s.score)}${s.detail ? `: ${s.detail}` : ''}`;
      if (!run.details.includes(line)) run.details.push(line);
    }
  }
  flush();
  if (!titleEl.childNodes.length) titleEl.hidden = true; else titleEl.hidden = false;
  const flagged = [...new Set(spans.map((s) => s.category))];
  if (flagged.length) {
    legend.append(h('span', { class: 'muted', text: 'Highlighted: ' }), ...flagged.map((c) => categoryChip(c)));
  } else {
    legend.append(h('span', { class: 'muted', text: 'No text passages were flagged.' }));
  }
}

function renderRiskBars(risk) {
  const box = clear($('#risk-bars'));
  const assessed = risk.filter((r) => r.score !== null && r.score !== undefined)
    .sort((a, b) => b.score - a.score);
  const missing = risk.filter((r) => r.score === null || r.score === undefined);
  for (const r of assessed) box.append(bar(categoryChip(r.category), r.score, r.model, { category: r.category }));
  if (missing.length) {
    const details = h('details', { class: 'not-assessed' },
      h('summary', { text: `Not assessed: ${missing.map((r) => r.category.replace('_', ' ')).join(', ')}` }));
    for (const r of missing) {
      details.append(h('p', {}, h('strong', { text: `${r.category.replace('_', ' ')}: ` }), r.not_assessed_reason || 'no model assessed it'));
    }
    box.append(details);
  }
  if (!risk.length) box.append(h('p', { class: 'muted', text: 'No risk scores.' }));
}

function bar(label, value, model, dataset) {
  const fill = h('span', { class: 'bar-fill' });
  setVar(fill, '--value', Math.max(0, Math.min(1, Number(value) || 0)));
  return h('div', { class: 'bar-row', dataset },
    h('span', { class: 'bar-label' }, label),
    h('span', { class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 1, 'aria-valuenow': Number(value).toFixed(2) }, fill),
    h('span', { class: 'bar-value', text: score(value) }),
    model ? h('span', { class: 'bar-model', text: model }) : null);
}

function renderLabels(labels) {
  const box = clear($('#label-bars'));
  if (!labels.length) box.append(h('p', { class: 'muted', text: 'No category labels.' }));
  const sorted = [...labels].sort((a, b) => (a.path || []).join('/').localeCompare((b.path || []).join('/')));
  for (const label of sorted) {
    const path = (label.path && label.path.length ? label.path : [label.name]).join(' › ');
    const when = Number.isFinite(label.start_ms) ? ` (${formatMs(label.start_ms)}–${formatMs(label.end_ms)})` : '';
    box.append(bar(path + when, label.confidence, label.taxonomy_version, { labelId: label.id }));
  }
}

function renderEntities(entities, keywords) {
  const entBox = clear($('#entities'));
  const kwBox = clear($('#keywords'));
  for (const e of entities) {
    entBox.append(h('span', { class: 'chip', title: e.source || '' }, e.text, h('small', { text: e.label })));
  }
  if (!entities.length) entBox.append(h('span', { class: 'muted', text: 'No entities.' }));
  for (const k of keywords) kwBox.append(h('span', { class: 'chip keyword', text: k.text }));
}

function describeEntry(entry) {
  const after = entry.after || {};
  const before = entry.before || {};
  switch (entry.action) {
    case 'task.decided': {
      const d = after.decision || {};
      const codes = (d.policy_codes || []).join(', ');
      return [d.action || 'decided', codes && `(${codes})`, d.note && `“${d.note}”`].filter(Boolean).join(' ');
    }
    case 'report.received':
      return `report${after.reason ? `: “${after.reason}”` : ''} (weight ${after.weight ?? '?'})`;
    case 'item.state':
      return `${before.state || '?'} → ${after.state || '?'}${after.reason ? ` (${after.reason})` : ''}`;
    case 'task.claimed':
      return `claimed until ${after.lease_expires_at ? formatTime(after.lease_expires_at) : '?'}`;
    case 'task.released':
      return 'released';
    case 'task.skipped':
      return 'skipped (back to the queue, last in this moderator’s order)';
    case 'task.opened':
      return `opened: ${after.reason || ''}${after.tier ? `, tier ${after.tier}` : ''}${after.note ? `, “${after.note}”` : ''}`;
    case 'policy.routed':
      return `routed to ${after.route || '?'}${(after.reasons || []).length ? `: ${after.reasons.join('; ')}` : ''}`;
    default:
      return '';
  }
}

function renderPast(history) {
  const list = clear($('#item-past'));
  const decisions = history.filter((e) => e.action === 'task.decided');
  const reports = history.filter((e) => e.action === 'report.received');
  if (!decisions.length && !reports.length) {
    list.append(h('li', { class: 'muted', text: 'No reports and no earlier decisions.' }));
  }
  // Many reports usually repeat a few reasons: one line per reason keeps the panel short.
  const byReason = new Map();
  for (const entry of reports) {
    const reason = (entry.after && entry.after.reason) || '';
    const group = byReason.get(reason) || { count: 0, reporters: new Set(), last: entry.at };
    group.count += 1;
    group.reporters.add(entry.actor);
    group.last = entry.at;
    byReason.set(reason, group);
  }
  for (const [reason, group] of byReason) {
    list.append(h('li', { dataset: { action: 'report.received', count: group.count } },
      h('time', { datetime: group.last, text: formatTime(group.last) }), ' ',
      h('strong', { text: `${group.count} report${group.count === 1 ? '' : 's'}` }),
      reason ? `: “${reason}”` : ' (no reason given)',
      h('span', { class: 'muted', text: ` from ${group.reporters.size} reporter${group.reporters.size === 1 ? '' : 's'}` })));
  }
  for (const entry of decisions) {
    list.append(h('li', { dataset: { action: entry.action } },
      h('time', { datetime: entry.at, text: formatTime(entry.at) }), ' ',
      h('strong', { text: entry.actor }), ' ', describeEntry(entry)));
  }
}

// -- media: blurred and greyscaled until revealed -------------------------------------

function mediaKind(entry) {
  const type = String(entry.media_type || entry.kind || entry.type || '');
  for (const kind of ['image', 'video', 'audio']) if (type.startsWith(kind)) return kind;
  if (Array.isArray(entry.segments)) return 'video';
  return type || 'media';
}

function blobSha(entry) {
  if (!entry) return null;
  return entry.sha256 || entry.blob_sha256 || (entry.blob && entry.blob.sha256) || null;
}

function analysisOf(entry) {
  // Intake may nest the analyzer's output under "analysis" next to the blob fields.
  return entry.analysis && typeof entry.analysis === 'object' ? { ...entry, ...entry.analysis } : entry;
}

function blurred(inner) {
  return h('div', { class: 'sensitive' }, inner);
}

function sensitive(inner, label) {
  const wrap = blurred(inner);
  const toggle = h('button', {
    type: 'button', class: 'reveal-one quiet', text: 'Show',
    'aria-label': `Show or blur ${label}`,
    onclick: () => {
      const on = wrap.classList.toggle('revealed');
      toggle.textContent = on ? 'Blur' : 'Show';
    },
  });
  return h('div', { class: 'sensitive-frame' }, wrap, toggle);
}

function renderMedia(entries) {
  const box = clear($('#media'));
  entries.forEach((raw, index) => {
    const entry = analysisOf(raw);
    const kind = mediaKind(entry);
    const figure = h('figure', { class: `panel media media-${kind}`, dataset: { kind, index } });
    box.append(figure);
    if (kind === 'image') renderImage(figure, entry);
    else if (kind === 'video') renderVideo(figure, entry);
    else if (kind === 'audio') renderAudio(figure, entry);
    else figure.append(h('p', { class: 'muted', text: `Media of type ${kind} has no viewer here.` }));
  });
}

function loadInto(element, sha, figure, what) {
  if (!sha) {
    figure.append(h('p', { class: 'muted', text: `The ${what} file is not available to the console.` }));
    return Promise.resolve(null);
  }
  return fetchMediaUrl(sha).then((url) => {
    element.src = url;
    return url;
  }).catch((error) => {
    figure.append(h('p', { class: 'media-error', text: `The ${what} could not be loaded: ${error.message}` }));
    return null;
  });
}

function imageRisk(entry) {
  const assessed = (entry.risk || []).filter((r) => r.score !== null && r.score !== undefined);
  return assessed.sort((a, b) => b.score - a.score);
}

function boxesLayer(entry) {
  const layer = h('div', { class: 'boxes', 'aria-hidden': 'true' });
  const width = Number(entry.width);
  const height = Number(entry.height);
  if (!(width > 0 && height > 0)) return layer;
  const add = (box, label, cls) => {
    const [x, y, w, hgt] = Array.isArray(box) ? box : [box.x, box.y, box.w, box.h];
    const el = h('span', { class: `box ${cls}`, title: label }, h('span', { class: 'box-label', text: label }));
    setVar(el, '--x', x / width); setVar(el, '--y', y / height);
    setVar(el, '--w', w / width); setVar(el, '--h', hgt / height);
    layer.append(el);
  };
  const flagged = flaggedCategories(entry.risk);
  for (const r of entry.risk || []) {
    if (!flagged.has(r.category)) continue;
    for (const ev of r.evidence || []) if (ev.kind === 'image_box' && ev.box) add(ev.box, `${r.category} ${score(r.score)}`, `cat-${r.category}`);
  }
  if (flagged.has('sexual')) {
    for (const d of entry.detections || []) if (d.box) add(d.box, `${d.label} ${score(d.score)}`, 'detection');
  }
  return layer;
}

function renderImage(figure, entry) {
  const img = h('img', { alt: 'item image (blurred until revealed)', decoding: 'async' });
  const stage = h('div', { class: 'stage' }, img, boxesLayer(entry));
  figure.append(sensitive(stage, 'this image'));
  const top = imageRisk(entry).slice(0, 3).map((r) => `${r.category} ${score(r.score)}`).join(', ');
  figure.append(h('figcaption', {
    text: [`image ${entry.width || '?'}×${entry.height || '?'}`, entry.faces ? `${entry.faces.count} face(s)` : null, top && `risk: ${top}`].filter(Boolean).join(' · '),
  }));
  loadInto(img, blobSha(entry), figure, 'image');
}

function keyframesOf(entry) {
  // Intake lists stored keyframe images (t_ms, sha256); the analysis has their risk.
  const segments = new Map((entry.segments || []).map((s) => [s.keyframe_ms, s]));
  const listed = Array.isArray(entry.keyframes) && entry.keyframes.length
    ? entry.keyframes
    : (entry.segments || []).map((s) => ({ t_ms: s.keyframe_ms, start_ms: s.start_ms, end_ms: s.end_ms }));
  return listed.map((k) => {
    const t = k.t_ms ?? k.keyframe_ms;
    const segment = segments.get(t) || {};
    return {
      t, sha: blobSha(k), image: segment.image || {},
      start: k.start_ms ?? segment.start_ms, end: k.end_ms ?? segment.end_ms,
    };
  });
}

// The categories that put this task in the queue; evidence of others is context only.
// Tasks opened for another reason (QA sample, reports) fall back to scores of 0.5 and up.
function flaggedCategories(risk) {
  const flagged = new Set((state.task && state.task.categories) || []);
  if (!flagged.size) {
    for (const r of risk || []) if (r.score !== null && r.score !== undefined && r.score >= 0.5) flagged.add(r.category);
  }
  return flagged;
}

function riskyRanges(entry) {
  const flagged = flaggedCategories(entry.risk);
  const ranges = [];
  for (const r of entry.risk || []) {
    if (!flagged.has(r.category)) continue;
    for (const ev of r.evidence || []) {
      if (ev.kind === 'time_range' && Number.isFinite(ev.start_ms) && Number.isFinite(ev.end_ms)) {
        ranges.push({ start: ev.start_ms, end: Math.max(ev.end_ms, ev.start_ms), category: r.category, score: r.score, detail: ev.detail });
      }
    }
  }
  return ranges.sort((a, b) => a.start - b.start);
}

function renderVideo(figure, entry) {
  const video = h('video', { controls: true, preload: 'metadata', playsinline: true });
  figure.append(sensitive(video, 'this video'));
  const duration = Number(entry.duration_ms) || 0;
  const ranges = riskyRanges(entry);
  const frames = keyframesOf(entry).filter((k) => Number.isFinite(k.t));
  const seek = (ms) => {
    video.currentTime = ms / 1000;
    video.focus();
  };

  const timeline = h('div', { class: 'timeline', 'aria-label': 'risky time ranges' });
  for (const r of ranges) {
    const mark = h('button', {
      type: 'button', class: `range cat-${r.category}`,
      title: `${r.category} ${score(r.score)}: ${formatMs(r.start)}–${formatMs(r.end)}${r.detail ? ` (${r.detail})` : ''}`,
      'aria-label': `jump to ${r.category} at ${formatMs(r.start)}`,
      onclick: () => seek(r.start),
    });
    if (duration > 0) {
      setVar(mark, '--start', r.start / duration);
      setVar(mark, '--width', Math.max(0.01, (r.end - r.start) / duration));
    }
    timeline.append(mark);
  }
  if (ranges.length) figure.append(timeline);

  const strip = h('ol', { class: 'keyframes', 'aria-label': 'keyframes' });
  const needCapture = [];
  for (const frame of frames) {
    const risky = ranges.some((r) => frame.t >= r.start && frame.t <= r.end)
      || (frame.start !== undefined && ranges.some((r) => r.start < frame.end && r.end > frame.start));
    const top = imageRisk(frame.image).find((r) => r.score >= 0.01);
    const thumbHolder = h('span', { class: 'thumb' });
    const button = h('button', {
      type: 'button', class: `keyframe${risky ? ' risky' : ''}`, onclick: () => seek(frame.t),
      'aria-label': `jump to ${formatMs(frame.t)}`,
    }, blurred(thumbHolder),
    h('span', { class: 'kf-time', text: formatMs(frame.t) }),
    top ? h('span', { class: 'kf-risk', text: `${top.category} ${score(top.score)}` }) : null);
    strip.append(h('li', {}, button));
    if (frame.sha) {
      const img = h('img', { alt: '' });
      thumbHolder.append(img);
      fetchMediaUrl(frame.sha).then((url) => { img.src = url; }).catch(() => needCapture.push({ frame, thumbHolder }));
    } else {
      needCapture.push({ frame, thumbHolder });
    }
  }
  if (frames.length) figure.append(strip);

  if (ranges.length) {
    const jumps = h('div', { class: 'jumps' }, h('span', { class: 'muted', text: 'Risky moments: ' }));
    for (const r of ranges) {
      jumps.append(h('button', {
        type: 'button', class: 'quiet jump', onclick: () => seek(r.start),
        text: `${r.category.replace('_', ' ')} ${formatMs(r.start)}–${formatMs(r.end)}`,
      }));
    }
    figure.append(jumps);
  }
  const info = [`video ${formatMs(duration)}`, entry.width ? `${entry.width}×${entry.height}` : null, entry.fps ? `${Number(entry.fps).toFixed(0)} fps` : null];
  figure.append(h('figcaption', { text: info.filter(Boolean).join(' · ') }));
  if (entry.audio) renderAudioFacts(figure, analysisOf(entry.audio));

  loadInto(video, blobSha(entry), figure, 'video').then((url) => {
    if (url && needCapture.length) captureThumbnails(url, needCapture);
  });
}

// Keyframes without their own stored image are drawn from the video itself.
async function captureThumbnails(url, wanted) {
  const probe = document.createElement('video');
  probe.muted = true;
  probe.preload = 'auto';
  probe.src = url;
  const once = (event) => new Promise((resolve, reject) => {
    probe.addEventListener(event, resolve, { once: true });
    probe.addEventListener('error', reject, { once: true });
  });
  try {
    await once('loadeddata');
    for (const { frame, thumbHolder } of wanted) {
      probe.currentTime = frame.t / 1000;
      await once('seeked');
      const canvas = document.createElement('canvas');
      const ratio = probe.videoHeight / probe.videoWidth || 0.5625;
      canvas.width = 160;
      canvas.height = Math.round(160 * ratio);
      canvas.getContext('2d').drawImage(probe, 0, 0, canvas.width, canvas.height);
      thumbHolder.append(canvas);
    }
  } catch {
    for (const { thumbHolder } of wanted) thumbHolder.classList.add('no-thumb');
  } finally {
    probe.removeAttribute('src');
    probe.load();
  }
}

function renderAudioFacts(figure, entry) {
  const facts = [
    Number.isFinite(entry.duration_ms) ? `audio ${formatMs(entry.duration_ms)}` : 'audio',
    entry.speech_music ? entry.speech_music.label : null,
    Number.isFinite(entry.loudness_dbfs) ? `${entry.loudness_dbfs.toFixed(1)} dBFS` : null,
    entry.tempo_bpm ? `${Math.round(entry.tempo_bpm)} bpm` : null,
  ];
  figure.append(h('p', { class: 'muted', text: facts.filter(Boolean).join(' · ') }));
  if (entry.transcript && entry.transcript.text) {
    figure.append(h('blockquote', { class: 'transcript' }, h('small', { text: `transcript (${entry.transcript.model})` }), h('p', { text: entry.transcript.text })));
  }
}

function renderAudio(figure, entry) {
  const audio = h('audio', { controls: true, preload: 'metadata' });
  figure.append(audio);
  renderAudioFacts(figure, entry);
  loadInto(audio, blobSha(entry), figure, 'audio');
}

function toggleReveal() {
  if (state.view !== 'task' || !state.task) return;
  state.revealed = !state.revealed;
  const view = $('#view-task');
  view.dataset.revealed = String(state.revealed);
  const button = $('#reveal');
  button.setAttribute('aria-pressed', String(state.revealed));
  button.firstChild.textContent = state.revealed ? 'Blur media ' : 'Unblur media ';
}

// -- the lease: countdown, and heartbeats while the tab is open ---------------------

function startLease(task) {
  const expires = Date.parse(task.lease_expires_at);
  const remaining = Number.isNaN(expires) ? 0 : expires - serverNow();
  state.leaseDeadline = Date.now() + remaining;
  state.leaseTotal = remaining;
  // Renew well before the end: a quarter of the lease, between 5 s and 60 s.
  const every = Math.min(60000, Math.max(5000, remaining / 4));
  state.heartbeatTimer = setInterval(heartbeat, every);
  state.countdownTimer = setInterval(renderLease, 1000);
  renderLease();
}

function updateLease(task) {
  const expires = Date.parse(task.lease_expires_at);
  if (!Number.isNaN(expires)) state.leaseDeadline = Date.now() + (expires - serverNow());
  renderLease();
}

async function heartbeat() {
  const task = state.task;
  if (!task || state.leaseLost) return;
  try {
    const fresh = await api('POST', `/review/tasks/${task.id}/heartbeat`);
    if (state.task && state.task.id === task.id) updateLease(fresh);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 0 || error.status >= 500) {
      notify('Could not renew the lease just now; retrying. Your work is not lost.', { kind: 'error', code: error.code });
      return;
    }
    if (state.task && state.task.id === task.id) loseLease(error);
  }
}

function loseLease(error) {
  state.leaseLost = true;
  clearInterval(state.heartbeatTimer);
  setDecisionEnabled(false);
  $('#lease').dataset.state = 'lost';
  $('#lease-time').textContent = 'lost';
  const why = error ? ` (${error.message})` : '';
  notify(`This task is no longer yours${why}. Nothing was decided; press n for the next task.`,
    { kind: 'error', code: error && error.code });
  state.task = null;
}

function renderLease() {
  if (state.leaseDeadline === null) return;
  const left = state.leaseDeadline - Date.now();
  const lease = $('#lease');
  const text = $('#lease-time');
  if (state.leaseLost) return;
  if (left <= 0) {
    lease.dataset.state = 'expired';
    text.textContent = 'expired';
    return;
  }
  lease.dataset.state = left < Math.min(60000, state.leaseTotal / 4) ? 'low' : 'ok';
  lease.dataset.remainingS = String(Math.ceil(left / 1000));
  text.textContent = formatClock(left);
}

// -- decisions -------------------------------------------------------------------------

async function decide(action, codes = [], note = null) {
  const task = state.task;
  if (!task || state.busy || state.view !== 'task' || state.readonly) return;
  state.busy = true;
  setDecisionEnabled(false);
  try {
    const decision = await api('POST', `/review/tasks/${task.id}/decision`, {
      action, policy_codes: codes, note: note || null,
    });
    countDecision();
    const summary = {
      approve: 'Approved',
      reject: `Rejected (${decision.policy_codes.join(', ')})`,
      escalate: 'Escalated to tier 2',
    }[action];
    notify(`${summary}: ${task.item_id}.`);
    stopTask();
    state.busy = false;
    if (settings.autoNext) await claimNext();
    else await openOverview();
  } catch (error) {
    state.busy = false;
    if (error instanceof ApiError && error.status === 409) {
      loseLease(error);
      return;
    }
    setDecisionEnabled(!state.leaseLost);
    showError(error, action === 'reject' ? 'Rejecting' : action === 'approve' ? 'Approving' : 'Escalating');
  }
}

async function releaseTask() {
  const task = state.task;
  if (!task || state.busy || state.readonly) return;
  state.busy = true;
  try {
    await api('POST', `/review/tasks/${task.id}/release`);
    notify(`Released task #${task.id}; someone else may take it now.`);
  } catch (error) {
    showError(error, 'Releasing the task');
  } finally {
    state.busy = false;
  }
  stopTask();
  await openOverview();
}

// Skip: the task goes back to the queue, behind everything else this moderator may take
// (the server remembers who skipped it); the next task follows at once.
async function skipTask() {
  const task = state.task;
  if (!task || state.busy || state.readonly || state.leaseLost || state.view !== 'task') return;
  state.busy = true;
  setDecisionEnabled(false);
  try {
    await api('POST', `/review/tasks/${task.id}/skip`);
  } catch (error) {
    state.busy = false;
    if (error instanceof ApiError && error.status === 409) {
      loseLease(error);
      return;
    }
    setDecisionEnabled(true);
    showError(error, 'Skipping the task');
    return;
  }
  stopTask();
  state.busy = false;
  notify(`Skipped task #${task.id}; it comes back to you only after every other task.`);
  await claimNext();
  if (state.task && state.task.id === task.id) {
    notify(`Nothing else is waiting for you: this is task #${task.id} again, the one you skipped.`);
  }
}

function buildCodeList() {
  const list = clear($('#code-list'));
  const codes = (state.policy && state.policy.codes) || {};
  const flagged = new Set((state.task && state.task.categories) || []);
  // Codes for the categories this task was flagged for come first, so they get 1, 2, ...
  const rank = ([code, info]) => (flagged.has(info.category) ? 0 : info.category ? 1 : 2);
  const ordered = Object.entries(codes).sort((a, b) => rank(a) - rank(b) || a[0].localeCompare(b[0]));
  state.codeOrder = ordered.map(([code]) => code);
  ordered.forEach(([code, info], index) => {
    const box = h('input', { type: 'checkbox', value: code, id: `code-${index}`, dataset: { index } });
    box.addEventListener('change', renderPicked);
    const search = `${code} ${info.category || ''} ${info.description || ''}`.toLowerCase();
    list.append(h('li', { class: flagged.has(info.category) ? 'suggested' : null, dataset: { code, search } },
      h('label', { for: `code-${index}` }, box,
        h('span', { class: 'kbd-slot' }),
        h('span', { class: 'code', text: code }),
        h('span', { class: 'desc', text: info.description || '' }))));
  });
  if (!ordered.length) list.append(h('li', { class: 'muted', text: 'The policy lists no codes.' }));
  list.append(h('li', { class: 'empty', hidden: true, text: 'No code matches; Esc clears the filter.' }));
  // Number keys reach ten codes: with more, typing narrows the list first.
  $('#code-filter-row').hidden = ordered.length <= NUMBER_KEYS.length;
  $('#code-help').textContent = ordered.length > NUMBER_KEYS.length
    ? 'Type to filter, number keys toggle the codes shown, arrows move, Space toggles, Enter rejects, Esc clears the filter or cancels.'
    : 'Number keys toggle a code, arrows move, Space toggles, Enter rejects, Esc cancels.';
  $('#code-filter').value = '';
  applyCodeFilter();
}

function filterActive() {
  return !$('#code-filter-row').hidden;
}

// Every term typed must appear in the code, its category or its description.
function applyCodeFilter() {
  const terms = $('#code-filter').value.toLowerCase().split(/\s+/).filter(Boolean);
  const items = [...document.querySelectorAll('#code-list li[data-code]')];
  let shown = 0;
  for (const li of items) {
    const match = terms.every((term) => li.dataset.search.includes(term));
    li.hidden = !match;
    const slot = clear(li.querySelector('.kbd-slot'));
    if (match) {
      const key = NUMBER_KEYS[shown];
      slot.append(key ? h('kbd', { text: key }) : h('span', { class: 'kbd-gap' }));
      shown += 1;
    } else {
      slot.append(h('span', { class: 'kbd-gap' }));
    }
  }
  const empty = document.querySelector('#code-list li.empty');
  if (empty) empty.hidden = shown > 0 || !items.length;
  $('#code-shown').textContent = terms.length ? `${shown} of ${items.length} codes` : `${items.length} codes`;
  renderPicked();
}

function renderPicked() {
  const picked = allCodeBoxes().filter((b) => b.checked).map((b) => b.value);
  $('#code-picked').textContent = picked.length ? `Picked: ${picked.join(', ')}` : '';
}

function allCodeBoxes() {
  return [...document.querySelectorAll('#code-list input[type=checkbox]')];
}

// The codes on screen (the filter hides the others): number keys and arrows use these.
function codeBoxes() {
  return allCodeBoxes().filter((box) => !box.closest('li').hidden);
}

function openReject() {
  if (!state.task || state.view !== 'task' || state.leaseLost || state.readonly) return;
  closePanel();
  state.panel = 'reject';
  for (const box of allCodeBoxes()) box.checked = false;
  $('#code-filter').value = '';
  applyCodeFilter();
  $('#reject-note').value = '';
  $('#reject-panel').hidden = false;
  const first = filterActive() ? $('#code-filter') : codeBoxes()[0];
  if (first) first.focus();
}

function openEscalate() {
  if (!state.task || state.view !== 'task' || state.leaseLost || state.readonly) return;
  closePanel();
  state.panel = 'escalate';
  $('#escalate-note').value = '';
  $('#escalate-panel').hidden = false;
  $('#escalate-note').focus();
}

function closePanel() {
  state.panel = null;
  $('#reject-panel').hidden = true;
  $('#escalate-panel').hidden = true;
  if (state.view === 'task') $('#view-task').focus({ preventScroll: true });
}

function submitReject() {
  // Codes picked and then filtered out of sight still count: the "Picked" line shows them.
  const codes = allCodeBoxes().filter((b) => b.checked).map((b) => b.value);
  if (!codes.length) {
    notify('Pick at least one policy code (number keys, or arrows and Space).', { kind: 'error' });
    return;
  }
  const note = $('#reject-note').value.trim();
  decide('reject', codes, note || null);
}

function submitEscalate() {
  const note = $('#escalate-note').value.trim();
  if (!note) {
    notify('Add a short note for the senior moderator: what should they look at?', { kind: 'error' });
    $('#escalate-note').focus();
    return;
  }
  decide('escalate', [], note);
}

// -- item history -------------------------------------------------------------------------

async function openHistory(itemId, { push = true } = {}) {
  if (!itemId) return;
  if (push) navigate('history', itemId);
  closePanel();
  show('history');
  $('#history-title').textContent = `History of item ${itemId}`;
  const info = $('#history-item');
  info.textContent = '';
  const tbody = clear($('#history-table tbody'));
  const epoch = nextEpoch();
  try {
    const [entries, item] = await Promise.all([
      api('GET', `/review/items/${encodeURIComponent(itemId)}/history`),
      api('GET', `/items/${encodeURIComponent(itemId)}`).catch(() => null),
    ]);
    if (epoch !== navEpoch) return;
    if (item) {
      const name = item.title || (item.text.length > 80 ? `${item.text.slice(0, 79)}…` : item.text);
      info.textContent = `“${name}” by ${item.creator_id} · now ${item.state.replace('_', ' ')}`;
    }
    if (!entries.length) tbody.append(h('tr', {}, h('td', { colspan: 5, class: 'muted', text: 'No audit entries for this item.' })));
    for (const entry of entries) {
      const raw = h('details', {}, h('summary', { text: 'before / after' }),
        h('pre', { text: JSON.stringify({ before: entry.before, after: entry.after }, null, 2) }));
      tbody.append(h('tr', { dataset: { action: entry.action } },
        h('td', {}, h('time', { datetime: entry.at, text: formatTime(entry.at) })),
        h('td', { text: entry.actor }),
        h('td', {}, h('span', { class: 'action', text: entry.action }), ' ', describeEntry(entry)),
        h('td', { text: entry.task_id ? `#${entry.task_id}` : '–' }),
        h('td', {}, raw)));
    }
  } catch (error) {
    if (state.key) showError(error, `Loading the history of ${itemId}`);
  }
}

function historyBack() {
  if (history.state && history.length > 1) history.back();
  else if (state.task) { navigate('overview'); showTask(); } else openOverview();
}

// -- overlays -------------------------------------------------------------------------

let focusBeforeOverlay = null;

function openOverlay(name) {
  closeOverlay();
  focusBeforeOverlay = document.activeElement;
  state.overlay = name;
  const overlay = $(`#${name}`);
  overlay.hidden = false;
  overlay.querySelector('.dialog').focus();
}

function closeOverlay() {
  if (!state.overlay) return;
  $(`#${state.overlay}`).hidden = true;
  state.overlay = null;
  if (focusBeforeOverlay && document.contains(focusBeforeOverlay)) focusBeforeOverlay.focus({ preventScroll: true });
  focusBeforeOverlay = null;
}

// -- the keyboard -----------------------------------------------------------------------

const TEXT_INPUT_TYPES = new Set(['text', 'password', 'search', 'email', 'url', 'tel', 'number', 'date', 'datetime-local', 'month', 'time', 'week']);

function isTextField(el) {
  if (!el || !el.tagName) return false;
  if (el.isContentEditable) return true;
  const tag = el.tagName.toLowerCase();
  if (tag === 'textarea' || tag === 'select') return true;
  return tag === 'input' && TEXT_INPUT_TYPES.has((el.getAttribute('type') || 'text').toLowerCase());
}

function handleRejectKey(event, typing) {
  const filter = $('#code-filter');
  const inFilter = event.target === filter;
  const boxes = codeBoxes();
  if (event.key === 'Escape') {
    if (filterActive() && filter.value) {
      filter.value = '';
      applyCodeFilter();
      filter.focus();
    } else {
      closePanel();
    }
    return true;
  }
  if (event.key === 'Enter' && event.target.tagName === 'BUTTON') return false;
  if (event.key === 'Enter') { submitReject(); return true; }
  if (typing && !inFilter) return false; // the note field keeps its keys
  const number = NUMBER_KEYS.indexOf(event.key);
  if (number >= 0) {
    // Digits pick a shown code, also while typing in the filter (codes hold no digits).
    const box = boxes[number];
    if (box) {
      box.checked = !box.checked;
      renderPicked();
      if (!inFilter) box.focus();
    }
    return true;
  }
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    // The filter field sits above the first code in the cycle.
    const stops = filterActive() ? [filter, ...boxes] : boxes;
    const at = Math.max(stops.indexOf(document.activeElement), 0);
    const step = event.key === 'ArrowDown' ? 1 : -1;
    const next = stops[(at + step + stops.length) % stops.length];
    if (next) next.focus();
    return true;
  }
  if (inFilter) return false; // letters, Backspace and Space edit the filter
  if (event.key === '?') { openOverlay('help'); return true; }
  if (filterActive() && (event.key === 'Backspace' || (event.key.length === 1 && event.key !== ' '))) {
    // Typing on a code goes on in the filter field.
    filter.focus();
    filter.value = event.key === 'Backspace' ? filter.value.slice(0, -1) : filter.value + event.key;
    applyCodeFilter();
    return true;
  }
  return false;
}

function handleEscalateKey(event) {
  if (event.key === 'Escape') { closePanel(); return true; }
  if (event.key === 'Enter' && !event.shiftKey && event.target.tagName !== 'BUTTON') {
    submitEscalate();
    return true;
  }
  return false;
}

function onKeyDown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  const typing = isTextField(event.target);
  let handled = false;
  if (state.overlay) {
    if (event.key === 'Escape' || (event.key === '?' && state.overlay === 'help' && !typing)) {
      closeOverlay();
      handled = true;
    }
  } else if (state.panel === 'reject') {
    handled = handleRejectKey(event, typing);
  } else if (state.panel === 'escalate') {
    handled = handleEscalateKey(event);
  } else if (!typing && state.key) {
    handled = true;
    switch (event.key) {
      case '?': openOverlay('help'); break;
      case 'n': claimNext(); break;
      case 's': if (state.view === 'task') skipTask(); break;
      case 'a': if (state.view === 'task' && !state.leaseLost) decide('approve'); break;
      case 'r': openReject(); break;
      case 'e': openEscalate(); break;
      case 'u': toggleReveal(); break;
      case 'h':
        if (state.view === 'task' && state.item) openHistory(state.item.id);
        else if (state.view === 'task' && state.task) openHistory(state.task.item_id);
        break;
      case 'Escape':
        if (state.view === 'history') historyBack();
        else handled = false;
        break;
      default: handled = false;
    }
  }
  if (handled) event.preventDefault();
}

// -- wiring -------------------------------------------------------------------------------

function wire() {
  $('#signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('#key-input').value);
  });
  $('#sign-out').addEventListener('click', () => signOut());
  $('#nav-queue').addEventListener('click', () => openOverview());
  $('#brand').addEventListener('click', (event) => {
    event.preventDefault();
    if (!state.key) return;
    if (state.task) { navigate('overview'); showTask(); } else openOverview();
  });
  $('#refresh').addEventListener('click', () => openOverview({ push: false }));
  $('#claim-next').addEventListener('click', () => claimNext());
  $('#approve').addEventListener('click', () => decide('approve'));
  $('#reject').addEventListener('click', () => openReject());
  $('#escalate').addEventListener('click', () => openEscalate());
  $('#reject-submit').addEventListener('click', () => submitReject());
  $('#reject-cancel').addEventListener('click', () => closePanel());
  $('#escalate-submit').addEventListener('click', () => submitEscalate());
  $('#escalate-cancel').addEventListener('click', () => closePanel());
  $('#release').addEventListener('click', () => releaseTask());
  $('#skip').addEventListener('click', () => skipTask());
  $('#code-filter').addEventListener('input', () => applyCodeFilter());
  $('#reveal').addEventListener('click', () => toggleReveal());
  $('#open-history').addEventListener('click', () => state.task && openHistory(state.task.item_id));
  $('#history-back').addEventListener('click', () => historyBack());
  $('#history-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $('#history-item-id').value.trim();
    if (id) openHistory(id);
  });
  $('#open-help').addEventListener('click', () => openOverlay('help'));
  $('#help-close').addEventListener('click', () => closeOverlay());
  $('#open-settings').addEventListener('click', () => openOverlay('settings'));
  $('#settings-close').addEventListener('click', () => closeOverlay());
  for (const overlay of document.querySelectorAll('.overlay')) {
    overlay.addEventListener('click', (event) => { if (event.target === overlay) closeOverlay(); });
  }
  $('#notice-close').addEventListener('click', () => hideNotice());
  $('#setting-blur').addEventListener('change', (event) => saveSettings({ blur: event.target.value }));
  $('#setting-grey').addEventListener('change', (event) => saveSettings({ grey: event.target.checked }));
  $('#setting-autonext').addEventListener('change', (event) => saveSettings({ autoNext: event.target.checked }));
  $('#auto-next').addEventListener('change', (event) => saveSettings({ autoNext: event.target.checked }));
  document.addEventListener('keydown', onKeyDown);
  window.addEventListener('popstate', () => { closeOverlay(); route(); });
}

async function start() {
  wire();
  applySettings();
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (!saved) {
    show('signin');
    $('#key-input').focus();
    return;
  }
  try {
    state.me = await api('GET', '/me', null, saved);
    state.key = saved;
    afterSignIn();
    await route();
  } catch (error) {
    sessionStorage.removeItem(KEY_STORAGE);
    show('signin');
    showError(error, 'Restoring your session');
  }
}

start();
