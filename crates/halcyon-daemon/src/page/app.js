'use strict';
// Halcyon's status page: everything comes from the event stream (GET v1/events/stream), a
// `status` message whenever the node's view changes and a `record` message whenever an event
// record changes. The browser reconnects by itself with Last-Event-ID. No library, no CDN.
const RECORDS_SHOWN = 100;
// role: the page's token's, from the stream's answer (x-halcyon-role): the buttons that change
// things are shown to an admin only.
const st = { status: null, witness: null, records: new Map(), open: new Set(), notice: '', answer: '', role: null };

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
  return e;
}
const $ = (id) => document.getElementById(id);
// Local HH:MM:SS, with the date when not today (as the CLI shows times).
function clock(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  const time = d.toLocaleTimeString([], { hour12: false });
  if (d.toDateString() === new Date().toDateString()) return time;
  const pad = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + time;
}
// A text the cluster wrote with RFC 3339 times (a plan with its reasons, a refusal, a note,
// an explanation) with each of them in local time (halcyon_policy::times_as for the CLI).
const RFC3339 = /(^|[^0-9A-Za-z])(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)(?![0-9A-Za-z])/g;
function localTimes(text) {
  return (text || '').replace(RFC3339, (all, before, ts) => isNaN(new Date(ts).getTime()) ? all : before + clock(ts));
}
function ago(ts) {
  if (!ts) return '';
  const ms = Date.now() - new Date(ts).getTime();
  const s = Math.round(Math.abs(ms) / 1000);
  const span = s < 60 ? s + ' s' : s < 3600 ? Math.round(s / 60) + ' min' : s < 86400 ? Math.round(s / 3600) + ' h' : Math.round(s / 86400) + ' d';
  return ms >= -500 ? span + ' ago' : 'in ' + span;
}
function when(ts) { return h('span', { title: ts || '', 'data-ts': ts || '' }, clock(ts), ' ', h('span', { class: 'muted ago' }, '(' + ago(ts) + ')')); }
function secs(a, b) { return a && b ? ((new Date(b) - new Date(a)) / 1000).toFixed(2) + ' s' : ''; }
function badge(text, cls) { return h('span', { class: 'badge ' + (cls || '') }, text); }

function renderHeader(s) {
  document.title = 'Halcyon · ' + s.cluster;
  $('cluster').textContent = 'Halcyon · ' + s.cluster + (s.halted ? ' (halted)' : '');
  const q = $('quorum');
  q.replaceChildren(s.quorum.has_quorum
    ? badge('quorum (' + s.quorum.voters.length + ' voters, term ' + s.quorum.term + ')', 'ok')
    : badge(s.quorum.detail || 'no quorum', 'bad'));
  $('coordinator').replaceChildren('coordinator: ', h('b', { id: 'coordinator-name' }, s.coordinator || 'none'));
  $('answered').textContent = 'as seen by ' + s.answered_by + (s.lease.remaining_ms > 0 ? ' · holds its lease' : ' · holds no lease');
}

// The quorum witness (`[quorum.witness]`): whether it answers and votes, as the answering
// node last asked it (`st.witness`, from `GET v1/status`: the stream does not carry it).
function witnessRow(w) {
  const votes = w.voter ? badge('voter', 'ok')
    : badge(w.joining ? 'not a voter yet: joining' : 'not a voter', 'warn');
  // A new store waiting for its admission answers but does not vote: why, in its words.
  const held = w.held ? h('div', { class: 'bad', 'data-held': w.name }, 'holds its vote: ' + w.held) : null;
  return h('tr', { 'data-witness': w.name, 'data-reachable': String(w.reachable) },
    h('td', {}, h('b', {}, w.name), ' ', h('span', { class: 'muted' }, 'witness')),
    h('td', {}, w.reachable ? badge('reachable', 'ok') : badge('UNREACHABLE', 'bad'), ' ', votes, held),
    h('td', { class: 'muted' }, w.address + (w.last_applied != null ? ' · applied ' + w.last_applied : '')));
}

function renderNodes(s) {
  const witness = st.witness ? [witnessRow(st.witness)] : [];
  $('nodes').replaceChildren(...(s.nodes.map((n) => {
    const marks = [];
    // An excluded node is not a member either: its EXCLUDED badge says it, with why.
    if (!n.member && !n.excluded) marks.push(badge('not a member', 'warn'));
    if (n.departed) marks.push(badge('departed', 'bad'));
    if (n.halted_by_admin) marks.push(badge('halted by admin', 'warn'));
    // Excluded for not completing its work: why, since when, and what brings it back (as
    // `halcyon status` says it).
    const x = n.excluded;
    if (x) marks.push(badge('EXCLUDED', 'bad'));
    const excluded = x ? h('div', { class: 'bad', 'data-excluded': n.name }, 'excluded since ', when(x.since),
      ' (event #' + x.event + ', incarnation ' + x.incarnation + '): ' + localTimes(x.why) + '; it joins again when its daemon restarts (',
      h('code', {}, 'systemctl restart halcyon'), ' on ' + n.name + ')') : null;
    const reach = n.reachable === 'reachable' ? badge('reachable', 'ok')
      : n.reachable === 'unreachable' ? badge('UNREACHABLE', 'bad') : badge('unknown', 'muted');
    const nets = n.networks.map((w) => {
      const cls = w.path === 'up' || w.path === 'local' ? 'ok' : w.path === 'down' ? 'bad' : 'muted';
      const extra = (w.adapter_down ? ' adapter?' : '') + (w.down ? ' DOWN' : '');
      return h('span', { class: 'net ' + cls }, w.network + ': ' + w.path + extra);
    });
    const coord = n.name === s.coordinator ? ' ★' : '';
    return h('tr', { 'data-node': n.name, 'data-reachable': n.reachable, 'data-member': String(n.member) },
      h('td', { title: 'incarnation ' + (n.incarnation ?? '–') + (coord ? '; ★ coordinator' : '') }, h('b', {}, n.name + coord), ' ', h('span', { class: 'muted' }, '#' + (n.incarnation ?? '–'))),
      h('td', {}, reach, ' ', ...marks, excluded), h('td', {}, ...nets));
  }).concat(witness)));
}

function restarts(p) {
  const out = [];
  for (const [node, services] of Object.entries(p.restarts || {}))
    for (const [svc, c] of Object.entries(services))
      out.push(h('div', { title: c.last_exit || '' }, node + ' ' + svc + ': ' + c.count));
  return out.length ? out : ['–'];
}

function renderPackages(s) {
  $('packages').replaceChildren(...s.packages.map((p) => {
    const cls = p.status === 'up' ? 'ok' : p.status === 'down' ? 'warn' : 'bad';
    // A failure excludes its node until its expiry (failures_expire_at) or until cleared.
    const failed = Object.entries(p.failures || {}).map(([n, t]) => {
      const until = (p.failures_expire_at || {})[n];
      const clear = h('code', {}, 'halcyon package clear ' + p.name + ' -n ' + n);
      const excluded = !until ? h('span', {}, ': excluded there until cleared (', clear, ')')
        : new Date(until).getTime() > Date.now() ? h('span', {}, ': excluded there until ', when(until), ' (or ', clear, ')')
          : h('span', { class: 'muted' }, ': expired at ' + clock(until) + ', no longer excluded');
      return h('div', { class: 'bad', 'data-failure': n }, 'failed on ' + n + ' at ', when(t), excluded);
    });
    const nodes = [...p.nodes].join(', ');
    return h('tr', { 'data-package': p.name },
      h('td', {}, h('b', {}, p.name), p.switching ? null : h('div', { class: 'warn' }, 'switching disabled'),
        h('div', { class: 'actions' }, h('button', { onclick: () => explain(p.name) }, 'explain'), h('button', { onclick: () => availability(p.name) }, 'availability'))),
      h('td', {}, badge(p.status, cls), p.error ? h('div', { class: 'bad' }, localTimes(p.error)) : null),
      h('td', { class: 'pkg-node', 'data-package': p.name }, s.quorum.has_quorum ? (nodes || '–') : (nodes ? nodes + ' (last known)' : '–'), ...failed),
      h('td', {}, ...restarts(p)));
  }));
}

async function explain(name) {
  const box = $('explain');
  try {
    const r = await api('v1/explain/' + encodeURIComponent(name));
    const j = await r.json();
    box.replaceChildren(h('h2', {}, 'Why ' + name + ' runs where it runs'), h('pre', {}, localTimes(j.text || j.error || '')));
  } catch (e) { box.replaceChildren(h('pre', {}, String(e))); }
}

// `halcyon availability PKG` on the page: the share of the time the package was up since the
// event log begins, and every outage with its cause and event.
async function availability(name) {
  const box = $('explain');
  try {
    const r = await api('v1/availability/' + encodeURIComponent(name));
    const j = await r.json();
    if (!r.ok) { box.replaceChildren(h('pre', {}, j.error || JSON.stringify(j))); return; }
    const lines = [name + ': ' + j.percent.toFixed(3) + ' % available from ' + clock(j.since) + ' to ' + clock(j.until)
      + ' (up ' + j.up_seconds.toFixed(1) + ' s, down ' + j.down_seconds.toFixed(1) + ' s)'];
    lines.push(j.outages.length ? 'outages:' : 'no outage');
    for (const o of j.outages) lines.push('  ' + clock(o.start) + ' .. ' + (o.end ? clock(o.end) : '(still down)') + '  ' + o.seconds.toFixed(3) + ' s  ' + o.cause + '  (event #' + o.event + ')');
    box.replaceChildren(h('h2', {}, 'Availability of ' + name), h('pre', { id: 'availability' }, lines.join('\n')));
  } catch (e) { box.replaceChildren(h('pre', {}, String(e))); }
}

async function answer(id, what) {
  if (!confirm(what + ' event ' + id + '?')) return;
  try {
    const r = await api('v1/events/' + id + '/' + what, { method: 'POST' });
    const j = await r.json();
    st.answer = (r.ok ? '' : 'refused: ') + (j.error || j.message || JSON.stringify(j));
  } catch (e) { st.answer = String(e); }
  render();
}

function renderAlerts(s) {
  const box = $('alerts');
  const kids = [];
  if (st.notice) kids.push(h('div', { class: 'notice' }, st.notice));
  const e = s.execution;
  if (e && e.state === 'error') {
    kids.push(h('div', { class: 'error-box', id: 'error-event' },
      h('h2', { class: 'bad' }, 'Event ' + e.id + ' (' + e.event + ') stopped in ERROR'),
      ...e.failures.map((f) => h('div', {}, h('b', {}, f.node), ': ', h('code', {}, f.command),
        ' exited ' + f.status + ' (attempts ' + f.attempts + ')', h('pre', {}, f.output_tail || '(no output)'))),
      st.role === 'admin'
        ? h('div', {}, 'Choose: ',
          h('button', { onclick: () => answer(e.id, 'resume'), title: 'continue after the barrier (halcyon event resume ' + e.id + ')' }, 'resume'), ' ',
          h('button', { onclick: () => answer(e.id, 'retry'), title: 'run the failed commands again (halcyon event retry ' + e.id + ')' }, 'retry'), ' ',
          h('button', { onclick: () => answer(e.id, 'skip'), title: 'abandon the rest of its program (halcyon event skip ' + e.id + ')' }, 'skip'),
          h('span', { class: 'muted' }, '  or: halcyon event resume|retry|skip ' + e.id))
        : h('div', {}, 'An administrator chooses: resume (continue after the barrier), retry (run the failed commands again) or skip (abandon the rest of its program): ',
          h('code', {}, 'halcyon event resume|retry|skip ' + e.id), h('span', { class: 'muted' }, ' (this page\'s token is ' + (st.role || 'unknown') + '; with an admin token it offers buttons)'))));
  } else if (e) {
    kids.push(h('div', {}, 'Processing event ' + e.id + ': ', h('b', {}, e.event),
      ' (segment ' + (e.segment ?? '–') + ' of ' + e.segments + ', ' + e.running.length + ' commands running, ' + e.open_actions + ' actions open)'));
  }
  if (st.answer) kids.push(h('div', { class: 'notice' }, st.answer));
  if (s.config_drift && s.config_drift.length) kids.push(h('div', { class: 'warn' }, 'configuration files differ from the running cluster: ' + s.config_drift.join('; ')));
  box.hidden = kids.length === 0;
  box.replaceChildren(...kids);
  $('pending').textContent = s.pending.length ? '· pending: ' + s.pending.join(', ') : '';
}

function outcomeClass(o) { return o === 'done' ? 'ok' : o === 'running' ? 'warn' : 'bad'; }

function renderRecord(r) {
  const d = h('details', { 'data-record': r.id, 'data-event': r.event, 'data-outcome': r.outcome, open: st.open.has(r.id) });
  d.addEventListener('toggle', () => { if (d.open) st.open.add(r.id); else st.open.delete(r.id); });
  const body = [];
  if (r.error) body.push(h('div', { class: 'bad' }, localTimes(r.error)));
  if (r.plan) body.push(h('div', {}, h('b', {}, 'plan (with the reason of every action)')), h('pre', {}, localTimes(r.plan)));
  if (r.actions.length) body.push(h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, ...['step', 'action', 'package', 'node', 'result', 'at'].map((t) => h('th', {}, t)))),
    h('tbody', {}, ...r.actions.map((a) => h('tr', {}, h('td', {}, a.step + 1), h('td', {}, typeof a.kind === 'string' ? a.kind : Object.keys(a.kind)[0]),
      h('td', {}, a.package || ''), h('td', {}, a.node), h('td', { class: a.ok ? 'ok' : 'bad' }, (a.ok ? 'ok' : 'FAILED') + (a.detail ? ': ' + a.detail : '')), h('td', {}, clock(a.at))))))));
  if (r.program) body.push(h('div', {}, h('b', {}, 'recovery program')), h('pre', {}, r.program));
  if (r.launches.length) body.push(h('div', {}, h('b', {}, 'commands')), ...r.launches.map((l) => {
    const status = l.abandoned ? 'abandoned: ' + l.abandoned : l.status === null || l.status === undefined ? (l.finished_at ? '' : 'running') : 'exit ' + l.status;
    const idle = l.output === 'nothing to do on this node';
    return h('div', { class: idle ? 'muted' : '' }, h('b', {}, l.node || 'coordinator'), ' ', h('code', {}, l.command), ' ', h('span', { class: l.status ? 'bad' : 'muted' }, status),
      ' ', h('span', { class: 'muted' }, clock(l.started_at) + (l.finished_at ? ' → ' + clock(l.finished_at) : '')), idle ? ' · nothing to do on this node' : l.output ? h('pre', {}, l.output) : null);
  }));
  if (r.notes.length) body.push(h('div', {}, h('b', {}, 'notes')), ...r.notes.map((n) => h('div', { class: 'warn' }, clock(n.at) + ' ' + localTimes(n.text))));
  const e = st.status && st.status.execution;
  const inError = r.outcome === 'running' && e && e.id === r.id && e.state === 'error';
  d.append(h('summary', {}, h('span', { class: 'muted' }, '#' + r.id), h('span', { class: 'ev' }, r.event), inError ? badge('ERROR', 'bad') : badge(r.outcome, outcomeClass(r.outcome)),
    when(r.started_at || r.queued_at), h('span', { class: 'muted' }, secs(r.started_at, r.finished_at)), h('span', { class: 'muted' }, 'by ' + r.by)), ...body);
  return d;
}

function renderTimeline() {
  const ids = [...st.records.keys()].sort((a, b) => b - a).slice(0, RECORDS_SHOWN);
  $('timeline').replaceChildren(...ids.map((id) => renderRecord(st.records.get(id))));
}

let queued = false;
function render() {
  if (queued) return;
  queued = true;
  queueMicrotask(() => {
    queued = false;
    const s = st.status;
    if (s) { renderHeader(s); renderNodes(s); renderPackages(s); renderAlerts(s); }
    renderTimeline();
    document.body.dataset.updated = String(Date.now());
  });
}

function connected(ok) {
  const c = $('conn');
  c.className = ok ? 'live' : 'down';
  c.textContent = ok ? '● live' : '○ reconnecting…';
}

// Every request for data carries the API token given in the page's address (`#token=`,
// never sent to the server as part of the address), kept for this tab only.
const TOKEN = (() => {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('halcyon-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem('halcyon-token');
})();

function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (TOKEN) headers.Authorization = 'Bearer ' + TOKEN;
  return fetch(path, Object.assign({}, options, { headers }));
}

function onMessage(kind, data) {
  if (kind === 'status') { st.status = JSON.parse(data); render(); return; }
  if (kind === 'record') {
    const r = JSON.parse(data);
    st.records.set(r.id, r);
    if (st.records.size > 2 * RECORDS_SHOWN) {
      for (const id of [...st.records.keys()].sort((a, b) => a - b).slice(0, st.records.size - RECORDS_SHOWN)) st.records.delete(id);
    }
    render();
    return;
  }
  if (kind === 'lost' || kind === 'dropped') { st.notice = JSON.parse(data).message; render(); }
}

// The event stream read with fetch (EventSource cannot send the token): server-sent events
// parsed as they arrive, resumed with Last-Event-ID after a break.
let lastId = null;
async function follow() {
  for (;;) {
    try {
      const headers = { Accept: 'text/event-stream' };
      if (lastId !== null) headers['Last-Event-ID'] = lastId;
      const r = await api('v1/events/stream', { headers });
      if (r.status === 401 || r.status === 403) {
        st.notice = 'the API refused the page (' + r.status + '): open it with #token=<an API token> after its address';
        connected(false);
        render();
        return;
      }
      if (!r.ok || !r.body) throw new Error('status ' + r.status);
      st.role = r.headers.get('x-halcyon-role');
      connected(true);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) kind = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            else if (line.startsWith('id:')) lastId = line.slice(3).trim();
          }
          if (data.length) onMessage(kind, data.join('\n'));
        }
      }
    } catch (e) { /* reconnect below */ }
    connected(false);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
follow();
// The witness is not in the stream (the answering node asks it over the network for each
// `GET v1/status`): asked again every 5 s.
async function askWitness() {
  try {
    const r = await api('v1/status');
    if (r.ok) {
      const w = (await r.json()).witness || null;
      if (JSON.stringify(w) !== JSON.stringify(st.witness)) { st.witness = w; render(); }
    }
  } catch (e) { /* kept as last asked */ }
  setTimeout(askWitness, 5000);
}
askWitness();
setInterval(() => {
  for (const e of document.querySelectorAll('[data-ts]')) { const a = e.querySelector('.ago'); if (a) a.textContent = '(' + ago(e.dataset.ts) + ')'; }
}, 5000);
