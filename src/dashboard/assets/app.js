// The ARES dashboard: asks for an API key, shows /api/dashboard, and keeps it current from
// the /api/events stream (read with fetch, because EventSource cannot send a key). Every
// value reaches the page as text, never as HTML.
'use strict';

const KEY_STORAGE = 'ares.apiKey';
/** Events arriving close together cause one refetch. */
const REFRESH_DELAY_MS = 250;
const MAX_EVENTS_SHOWN = 50;
const SVG = 'http://www.w3.org/2000/svg';

const state = {
  key: null,
  data: null,
  /** agent id -> trend points, oldest first */
  trends: new Map(),
  /** agent ids whose trend must be fetched again */
  staleTrends: new Set(),
  /** agent ids whose trend is being fetched */
  trendsInFlight: new Set(),
  stream: null,
  refreshTimer: null,
  refreshing: null,
  refreshAgain: false,
};

const $ = (id) => document.getElementById(id);

/** Builds an element; `props` sets properties (text, className, …) or attributes (data-*, aria-*). */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else if (name === 'className') node.className = value;
    else if (name.includes('-') || name === 'title' || name === 'role') node.setAttribute(name, String(value));
    else node[name] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class KeyRefused extends Error {}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    cache: 'no-store',
    headers: { Authorization: `Bearer ${state.key}` },
  });
  if (response.status === 401 || response.status === 403) {
    const why = (await response.text()).trim();
    throw new KeyRefused(response.status === 401 ? 'That key was not accepted.' : why);
  }
  if (!response.ok) {
    throw new Error(`${path} answered ${response.status}: ${(await response.text()).trim()}`);
  }
  return response;
}

// ---------------------------------------------------------------- signing in and out

function showLogin(message) {
  $('board').hidden = true;
  $('login').hidden = false;
  $('sign-out').hidden = true;
  $('login-error').textContent = message || '';
  setConnection('off', 'Not connected');
  $('api-key').focus();
}

async function openDashboard(key) {
  state.key = key;
  try {
    await refresh();
  } catch (error) {
    state.key = null;
    showLogin(error instanceof KeyRefused ? error.message : `Could not load the dashboard: ${error.message}`);
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  $('login').hidden = true;
  $('board').hidden = false;
  $('sign-out').hidden = false;
  listen();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  state.data = null;
  state.trends.clear();
  if (state.stream) state.stream.abort();
  state.stream = null;
  $('api-key').value = '';
  $('actions').replaceChildren();
  showLogin(message);
}

// ---------------------------------------------------------------- data

/** Refetches the dashboard; concurrent calls share one fetch and ask for one more after it. */
function refresh() {
  if (state.refreshing) {
    state.refreshAgain = true;
    return state.refreshing;
  }
  state.refreshing = (async () => {
    try {
      do {
        state.refreshAgain = false;
        const data = await (await api('/api/dashboard')).json();
        state.data = data;
        render(data);
        // Trends fill in as they arrive; the next refresh need not wait for them.
        loadTrends(data.agents).catch(failedRefresh);
      } while (state.refreshAgain);
    } finally {
      state.refreshing = null;
    }
  })();
  return state.refreshing;
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refresh().catch(failedRefresh);
  }, REFRESH_DELAY_MS);
}

function failedRefresh(error) {
  if (error instanceof KeyRefused) signOut(error.message);
  else setConnection('error', `Refresh failed: ${error.message}`);
}

/** Fetches the trends not yet loaded or made stale by a verdict, a few at a time. */
function loadTrends(agents) {
  const wanted = agents.filter((a) => !state.trendsInFlight.has(a.id)
    && (!state.trends.has(a.id) || state.staleTrends.has(a.id)));
  let next = 0;
  const worker = async () => {
    while (next < wanted.length && state.key) {
      const agent = wanted[next++];
      state.staleTrends.delete(agent.id);
      state.trendsInFlight.add(agent.id);
      try {
        const trend = await (await api(`/api/agents/${agent.id}/trend`)).json();
        state.trends.set(agent.id, trend.points);
        const cell = document.querySelector(`[data-trend="${agent.id}"]`);
        if (cell) cell.replaceChildren(sparkline(agent, trend.points));
      } catch (error) {
        if (error instanceof KeyRefused) throw error;
      } finally {
        state.trendsInFlight.delete(agent.id);
      }
    }
  };
  return Promise.all([worker(), worker(), worker(), worker()]);
}

// ---------------------------------------------------------------- the live stream

/** Reads /api/events until signed out, reconnecting with backoff. */
async function listen() {
  let delay = 1000;
  while (state.key) {
    const controller = new AbortController();
    state.stream = controller;
    try {
      const response = await api('/api/events', { signal: controller.signal });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + value).replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (dispatch(parseMessage(block))) delay = 1000;
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof KeyRefused) {
        signOut(error.message);
        return;
      }
    }
    if (!state.key) return;
    setConnection('retry', `Reconnecting in ${Math.round(delay / 1000)} s…`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

/** One Server-Sent Events message: its event name, id and data. */
function parseMessage(block) {
  const message = { event: 'message', id: null, data: [] };
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') message.event = value;
    else if (field === 'id') message.id = value;
    else if (field === 'data') message.data.push(value);
  }
  message.data = message.data.join('\n');
  return message;
}

/** Acts on a message; true when the stream is known to be healthy. */
function dispatch(message) {
  switch (message.event) {
    case 'ready':
      setConnection('live', 'Live');
      // Anything that happened while disconnected is only in the dashboard's state.
      scheduleRefresh();
      return true;
    case 'resync':
      scheduleRefresh();
      return true;
    case 'message': {
      if (!message.data) return false;
      const event = JSON.parse(message.data);
      showEvent(event, true);
      if (event.agent_id && (event.event_type === 'verification.completed' || event.event_type.startsWith('enforcement.'))) {
        state.staleTrends.add(event.agent_id);
      }
      scheduleRefresh();
      return true;
    }
    default:
      return false;
  }
}

function setConnection(kind, text) {
  const node = $('connection');
  node.dataset.state = kind;
  node.textContent = text;
}

// ---------------------------------------------------------------- rendering

function render(data) {
  renderAgents(data.agents, data.agents_truncated);
  renderActions(data.actions);
  renderTasks(data.tasks);
  renderHealth(data.health);
  const list = $('events');
  list.replaceChildren();
  for (const event of data.events) showEvent(event, false);
  $('events-empty').hidden = data.events.length > 0;
}

function agentName(id) {
  if (!id) return '—';
  const agent = state.data && state.data.agents.find((a) => a.id === id);
  return agent ? agent.name : shortId(id);
}

function shortId(id) {
  return String(id).slice(0, 8);
}

function time(iso) {
  if (!iso) return '—';
  const at = new Date(iso);
  const sameDay = at.toDateString() === new Date().toDateString();
  return sameDay ? at.toLocaleTimeString() : at.toLocaleString();
}

function timeNode(iso) {
  return h('time', { dateTime: iso, text: time(iso), title: iso });
}

function score(value) {
  return typeof value === 'number' ? value.toFixed(2) : '—';
}

function badge(kind, text) {
  return h('span', { className: `badge ${kind}`, text: text || kind.replace(/_/g, ' ') });
}

function renderAgents(agents, truncated) {
  const body = $('agents').tBodies[0];
  body.replaceChildren(...agents.map(agentRow));
  $('agents-empty').hidden = agents.length > 0;
  $('agents-count').textContent = `(${agents.length}${truncated ? '+' : ''})`;
}

function agentRow(agent) {
  const status = h('td', { className: 'status' }, badge(agent.status));
  if (agent.status === 'suspended' && agent.suspended_until) {
    status.append(h('small', { text: ` until ${time(agent.suspended_until)}` }));
  }
  if (agent.throttle_limit !== null && agent.status !== 'deregistered') {
    status.append(' ', badge('throttled', `throttled to ${agent.throttle_limit}`));
  }
  if (agent.on_probation) status.append(' ', badge('probation'));
  const trend = h('td', { 'data-trend': agent.id });
  trend.append(sparkline(agent, state.trends.get(agent.id) || []));
  return h(
    'tr',
    { 'data-agent-id': agent.id, 'data-status': agent.status, className: agent.status },
    h('th', { scope: 'row', title: agent.id }, agent.name),
    status,
    h('td', { className: 'num' }, meter(agent.reliability_score)),
    trend,
    h('td', { className: 'num', text: `${agent.open_tasks} / ${agent.effective_limit}` }),
    h('td', { className: 'caps', text: agent.capabilities.join(', ') || '—' }),
  );
}

function meter(value) {
  const node = h('span', { className: 'score' }, h('span', { text: score(value) }));
  const bar = h('span', { className: 'bar', 'aria-hidden': 'true' });
  const fill = h('span', { className: value >= 0.7 ? 'fill good' : value >= 0.4 ? 'fill fair' : 'fill poor' });
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, value)) * 100)}%`;
  bar.append(fill);
  node.append(bar);
  return node;
}

/** Reliability after each verdict as a line on a 0–1 scale, with a 0.5 guide. */
function sparkline(agent, points) {
  const width = 140;
  const height = 36;
  const pad = 3;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  const label = points.length === 0
    ? `${agent.name}: no verdicts yet`
    : `${agent.name}: reliability ${score(points[0].reliability_score)} to ${score(points[points.length - 1].reliability_score)} over ${points.length} verdict${points.length === 1 ? '' : 's'}`;
  svg.setAttribute('aria-label', label);
  const title = document.createElementNS(SVG, 'title');
  title.textContent = label;
  svg.append(title);
  const y = (v) => pad + (1 - Math.max(0, Math.min(1, v))) * (height - 2 * pad);
  const guide = document.createElementNS(SVG, 'line');
  for (const [k, v] of Object.entries({ x1: 0, x2: width, y1: y(0.5), y2: y(0.5), class: 'guide' })) guide.setAttribute(k, v);
  svg.append(guide);
  if (points.length === 0) return svg;
  const step = points.length > 1 ? (width - 2 * pad) / (points.length - 1) : 0;
  const coords = points.map((p, i) => [pad + i * step, y(p.reliability_score)]);
  if (coords.length > 1) {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', coords.map(([cx, cy]) => `${cx.toFixed(1)},${cy.toFixed(1)}`).join(' '));
    line.setAttribute('class', 'line');
    svg.append(line);
  }
  const [lx, ly] = coords[coords.length - 1];
  const dot = document.createElementNS(SVG, 'circle');
  for (const [k, v] of Object.entries({ cx: lx, cy: ly, r: 2.5, class: 'dot' })) dot.setAttribute(k, v);
  svg.append(dot);
  return svg;
}

/** Adds only the actions not shown yet, so a screen reader announces just those. */
function renderActions(actions) {
  const list = $('actions');
  const shown = new Map([...list.children].map((li) => [li.dataset.actionId, li]));
  let cursor = list.firstElementChild;
  for (const action of actions) {
    if (cursor && cursor.dataset.actionId === action.id) {
      cursor = cursor.nextElementSibling;
    } else {
      list.insertBefore(shown.get(action.id) || actionItem(action), cursor);
    }
  }
  while (cursor) {
    const next = cursor.nextElementSibling;
    cursor.remove();
    cursor = next;
  }
  $('actions-empty').hidden = actions.length > 0;
}

function actionItem(action) {
  const numbers = Object.entries(action.metrics || {})
    .filter(([, v]) => v !== null && typeof v !== 'object')
    .map(([k, v]) => `${k.replace(/_/g, ' ')} ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v}`);
  return h(
    'li',
    { 'data-action-id': action.id, 'data-action': action.action, 'data-agent-id': action.agent_id },
    h('div', { className: 'line1' },
      badge(action.action),
      h('strong', { text: agentName(action.agent_id) }),
      h('span', { className: 'muted', text: action.triggered_by === 'policy' ? 'by policy' : 'manual' }),
      timeNode(action.created_at)),
    h('p', { className: 'reason', text: action.reason }),
    numbers.length ? h('p', { className: 'numbers', text: numbers.join(' · ') }) : null,
    action.expires_at ? h('p', { className: 'muted' }, 'until ', timeNode(action.expires_at)) : null,
  );
}

function renderTasks(tasks) {
  const body = $('tasks').tBodies[0];
  body.replaceChildren(...tasks.map((task) => h(
    'tr',
    { 'data-task-id': task.id, 'data-status': task.status },
    h('th', { scope: 'row', title: `${task.id}\n${task.description}`, className: 'desc', text: truncate(task.description, 90) }),
    h('td', {}, badge(task.status)),
    h('td', { text: agentName(task.agent_id) }),
    h('td', { className: 'num', text: task.priority }),
    h('td', {}, timeNode(task.updated_at)),
  )));
  $('tasks-empty').hidden = tasks.length > 0;
  $('tasks-count').textContent = `(${tasks.length}${tasks.length >= 200 ? ', most recent' : ''})`;
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function renderHealth(health) {
  const uptime = Math.round(health.uptime_secs);
  $('health-summary').replaceChildren(
    badge(health.status),
    ` ARES ${health.version}, up ${uptime >= 3600 ? `${Math.floor(uptime / 3600)} h ${Math.floor(uptime / 60) % 60} min` : `${Math.floor(uptime / 60)} min ${uptime % 60} s`}`,
  );
  $('dependencies').replaceChildren(...health.dependencies.map((d) => h(
    'li',
    { 'data-status': d.status },
    badge(d.status),
    h('span', { className: 'dep-name', text: d.name }),
    d.latency_ms !== null && d.latency_ms !== undefined ? h('span', { className: 'muted', text: `${d.latency_ms.toFixed(1)} ms` }) : null,
    d.required ? h('span', { className: 'muted', text: 'required' }) : null,
    d.error ? h('p', { className: 'error-text', text: d.error }) : null,
  )));
}

/** Adds an event to the activity list: newest on top when live, in order when rendering. */
function showEvent(event, live) {
  const list = $('events');
  const subject = event.agent_id ? agentName(event.agent_id) : '';
  const extra = event.data && typeof event.data.status === 'string' ? event.data.status.replace(/_/g, ' ') : '';
  const item = h(
    'li',
    { 'data-event-id': event.event_id, 'data-event-type': event.event_type },
    h('span', { className: 'etype', text: event.event_type }),
    subject ? h('strong', { text: subject }) : null,
    extra ? h('span', { className: 'muted', text: extra }) : null,
    timeNode(event.timestamp),
  );
  if (live) {
    if (list.querySelector(`[data-event-id="${CSS.escape(event.event_id)}"]`)) return;
    list.prepend(item);
    while (list.children.length > MAX_EVENTS_SHOWN) list.lastElementChild.remove();
    $('events-empty').hidden = true;
  } else {
    list.append(item);
  }
}

// ---------------------------------------------------------------- downloads

async function download(report, format) {
  $('report-error').textContent = '';
  try {
    const response = await api(`/reports/${report}?format=${format}`);
    const disposition = response.headers.get('content-disposition') || '';
    const match = /filename="([^"]+)"/.exec(disposition);
    const url = URL.createObjectURL(await response.blob());
    const link = h('a', { href: url, download: match ? match[1] : `${report}.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    $('report-error').textContent = `Could not download the ${report} report: ${error.message}`;
  }
}

// ---------------------------------------------------------------- start

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('api-key').value.trim();
    if (key) openDashboard(key);
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  for (const button of document.querySelectorAll('[data-report]')) {
    button.addEventListener('click', () => download(button.dataset.report, button.dataset.format));
  }
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) openDashboard(saved);
  else showLogin('');
});
