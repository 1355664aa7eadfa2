/* rackboot dashboard (served at /ui/ by rackbootd, pxe/ui.c).
 *
 * Plain JavaScript, no framework, no build step, nothing loaded from
 * anywhere but this origin. It asks for an operator token (kept in
 * sessionStorage: this tab only), lists the nodes from /api/v1/nodes, shows
 * one node from /api/v1/nodes/<mac>, runs the reimage/hold/release actions
 * after a confirmation, and follows /api/v1/events live.
 *
 * The event stream is read with fetch() and parsed here rather than with
 * EventSource, because EventSource cannot send the Authorization header and
 * a token in the URL would end up in logs and history. On a drop it
 * reconnects with Last-Event-ID (the id of the last event it got) and then
 * re-reads the node list, so nothing is missed across a gap.
 *
 * Everything from the server is put into the page with textContent, never
 * as HTML. */
'use strict';

(function () {
	const API = '/api/v1';
	const TOKEN_KEY = 'rackboot.token';
	const MAX_EVENTS = 50;
	/* States in which a node is being provisioned or updated: its row shows
	 * the live step and progress. */
	const BUSY = new Set(['provisioning', 'reimage', 'wiping', 'imaging', 'installing', 'updating']);
	const KNOWN_STATES = ['new', 'discovered', 'provisioning', 'wiping', 'imaging', 'installing',
		'imaged', 'ready', 'updating', 'failed', 'retired'];

	const $ = (id) => document.getElementById(id);

	const app = {
		token: null,
		nodes: new Map(),      /* mac -> node (list fields, then the full document) */
		progress: new Map(),   /* mac -> progress record */
		gpus: new Map(),       /* mac -> GPU count from the inventory (null: none reported) */
		rows: new Map(),       /* mac -> <tr> */
		profiles: new Set(),
		detailWanted: new Set(),
		detailRunning: 0,
		lastEventId: null,
		stream: null,          /* AbortController of the event stream */
		streamGen: 0,
		current: null,         /* mac shown on the node page */
		currentDoc: null,
		pendingAction: null,
		listTimer: null,
		nodeTimers: new Map(),
	};

	/* ---- helpers ------------------------------------------------------- */

	function el(tag, props, ...children) {
		const e = document.createElement(tag);
		if (props)
			for (const [k, v] of Object.entries(props)) {
				if (v === undefined || v === null)
					continue;
				if (k === 'class')
					e.className = v;
				else if (k === 'text')
					e.textContent = v;
				else if (k.startsWith('data-'))
					e.setAttribute(k, v);
				else
					e[k] = v;
			}
		for (const c of children)
			if (c !== null && c !== undefined)
				e.append(c instanceof Node ? c : String(c));
		return e;
	}

	function clear(e) {
		while (e.firstChild)
			e.removeChild(e.firstChild);
	}

	function bytes(n) {
		if (typeof n !== 'number' || !isFinite(n))
			return '';
		const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
		let i = 0;
		while (n >= 1024 && i < u.length - 1) {
			n /= 1024;
			i++;
		}
		return (i === 0 || n >= 100 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + u[i];
	}

	function duration(s) {
		if (!isFinite(s) || s < 0)
			return '';
		s = Math.round(s);
		if (s < 60)
			return s + 's';
		if (s < 3600)
			return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
		return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
	}

	function when(ms) {
		if (!ms)
			return '';
		const d = new Date(ms);
		const pad = (x) => String(x).padStart(2, '0');
		return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
			pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
	}

	function toast(msg, isError) {
		const t = $('toast');
		t.textContent = msg;
		t.className = 'toast' + (isError ? ' error' : '');
		t.hidden = false;
		clearTimeout(toast.timer);
		toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 4000);
	}

	function setConn(kind, text) {
		const c = $('conn');
		c.className = 'conn conn-' + kind;
		c.textContent = text;
	}

	const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

	/* ---- API ----------------------------------------------------------- */

	class ApiError extends Error {
		constructor(msg, status) {
			super(msg);
			this.status = status;
		}
	}

	async function api(method, path, body) {
		const headers = { Authorization: 'Bearer ' + app.token, Accept: 'application/json' };
		const init = { method, headers, cache: 'no-store', credentials: 'omit' };
		if (body !== undefined) {
			headers['Content-Type'] = 'application/json';
			init.body = JSON.stringify(body);
		}
		let r;
		try {
			r = await fetch(API + path, init);
		} catch (e) {
			throw new ApiError('cannot reach rackbootd (' + e.message + ')', 0);
		}
		let doc = null;
		try {
			doc = await r.json();
		} catch (e) {
			doc = null;
		}
		if (r.status === 401 || r.status === 403) {
			const why = doc && doc.error ? doc.error : 'token refused';
			signOut('The server refused the token (' + r.status + ': ' + why + '). Paste a valid operator token.');
			throw new ApiError(why, r.status);
		}
		if (!r.ok)
			throw new ApiError(doc && doc.error ? doc.error : 'HTTP ' + r.status, r.status);
		return doc;
	}

	/* ---- sign in / out ------------------------------------------------- */

	function signOut(message) {
		app.token = null;
		sessionStorage.removeItem(TOKEN_KEY);
		stopStream();
		app.nodes.clear();
		app.rows.clear();
		app.progress.clear();
		app.gpus.clear();
		clear(document.querySelector('#nodes tbody'));
		setConn('off', 'offline');
		$('signout').hidden = true;
		$('nodes-view').hidden = true;
		$('node-view').hidden = true;
		$('login').hidden = false;
		$('login-error').textContent = message || '';
		$('token').value = '';
		$('token').focus();
	}

	async function signIn(token) {
		app.token = token;
		try {
			await loadNodes();
		} catch (e) {
			/* A refused token has signed out already (api()). */
			if (e.status !== 401 && e.status !== 403)
				signOut('Cannot list the nodes: ' + e.message);
			return;
		}
		sessionStorage.setItem(TOKEN_KEY, token);
		$('login').hidden = true;
		$('signout').hidden = false;
		loadProfiles();
		startStream();
		route();
	}

	/* ---- node list ----------------------------------------------------- */

	function gpuCount(inv) {
		if (!inv || typeof inv !== 'object')
			return null;
		if (inv.counts && typeof inv.counts.gpus === 'number')
			return inv.counts.gpus;
		if (Array.isArray(inv.gpus))
			return inv.gpus.length;
		return null;
	}

	/* Takes what a node document or list entry says about a node. */
	function absorb(n) {
		if (!n || typeof n.mac !== 'string')
			return null;
		const mac = n.mac.toLowerCase();
		const old = app.nodes.get(mac) || {};
		const node = Object.assign({}, old, n, { mac });
		delete node.events;
		delete node.inventory;
		delete node.hardware;
		app.nodes.set(mac, node);
		/* The node document has the inventory, a list entry its summary
		 * ("hardware", null until the node sent an inventory). */
		if ('inventory' in n)
			app.gpus.set(mac, gpuCount(n.inventory));
		else if ('hardware' in n)
			app.gpus.set(mac, n.hardware && typeof n.hardware.gpus === 'number' ? n.hardware.gpus : null);
		if ('progress' in n) {
			if (n.progress && typeof n.progress === 'object')
				app.progress.set(mac, n.progress);
			else
				app.progress.delete(mac);
		}
		if (node.profile)
			app.profiles.add(node.profile);
		return node;
	}

	async function loadNodes() {
		const doc = await api('GET', '/nodes');
		const list = Array.isArray(doc) ? doc : (doc && Array.isArray(doc.nodes) ? doc.nodes : []);
		const seen = new Set();
		for (const n of list) {
			const node = absorb(n);
			if (!node)
				continue;
			seen.add(node.mac);
			/* The list may not carry the inventory or the live progress:
			 * the node's own document has them. */
			if (!app.gpus.has(node.mac) || !('progress' in n))
				wantDetail(node.mac);
		}
		for (const mac of [...app.nodes.keys()])
			if (!seen.has(mac)) {
				app.nodes.delete(mac);
				const tr = app.rows.get(mac);
				if (tr)
					tr.remove();
				app.rows.delete(mac);
			}
		renderTable();
	}

	async function loadProfiles() {
		try {
			const doc = await api('GET', '/profiles');
			const list = Array.isArray(doc) ? doc : (doc && Array.isArray(doc.profiles) ? doc.profiles : []);
			for (const p of list) {
				const name = typeof p === 'string' ? p : p && p.name;
				if (name)
					app.profiles.add(name);
			}
			renderFilters();
		} catch (e) {
			/* The filter still offers the profiles the nodes carry. */
		}
	}

	/* Fetches node documents in the background, four at a time. */
	function wantDetail(mac) {
		app.detailWanted.add(mac);
		pumpDetail();
	}

	function pumpDetail() {
		while (app.detailRunning < 4 && app.detailWanted.size && app.token) {
			const mac = app.detailWanted.values().next().value;
			app.detailWanted.delete(mac);
			app.detailRunning++;
			api('GET', '/nodes/' + mac)
				.then((doc) => {
					absorb(doc);
					renderRow(mac);
					if (app.current === mac)
						renderNode(doc);
				})
				.catch(() => {})
				.finally(() => {
					app.detailRunning--;
					pumpDetail();
				});
		}
	}

	function filters() {
		return {
			state: $('f-state').value,
			profile: $('f-profile').value,
			text: $('f-text').value.trim().toLowerCase(),
		};
	}

	function matches(node, f) {
		if (f.state && node.state !== f.state)
			return false;
		if (f.profile && node.profile !== f.profile)
			return false;
		if (f.text) {
			const hay = [node.mac, node.hostname, node.ip, node.rack].join(' ').toLowerCase();
			if (!hay.includes(f.text))
				return false;
		}
		return true;
	}

	function renderFilters() {
		const fill = (sel, values) => {
			const keep = sel.value;
			const have = new Set([...sel.options].map((o) => o.value));
			for (const v of [...values].sort())
				if (v && !have.has(v))
					sel.append(el('option', { value: v, text: v }));
			sel.value = keep;
		};
		const states = new Set(KNOWN_STATES);
		for (const n of app.nodes.values())
			if (n.state)
				states.add(n.state);
		fill($('f-state'), states);
		fill($('f-profile'), app.profiles);
	}

	/* The node's live progress, or null: only while it is busy, and not a
	 * record left from an earlier run (its state then says "imaged", ...). */
	function liveProgress(mac) {
		const node = app.nodes.get(mac);
		const p = app.progress.get(mac);
		if (!node || !p || !BUSY.has(node.state) || (p.state && !BUSY.has(p.state)))
			return null;
		return p;
	}

	function progressCells(mac) {
		const p = liveProgress(mac);
		const step = el('td', { class: 'step' });
		const cell = el('td', { class: 'prog' });
		if (!p)
			return [step, cell];
		step.textContent = p.step || p.state || '';
		const done = Number(p.bytes_done) || 0;
		const total = Number(p.bytes_total) || 0;
		const bar = el('progress', { max: total > 0 ? total : 1, value: total > 0 ? Math.min(done, total) : 0 });
		bar.setAttribute('data-done', String(done));
		bar.setAttribute('data-total', String(total));
		cell.append(bar, el('span', { class: 'prog-text', text: progressText(p) }));
		return [step, cell];
	}

	function progressText(p) {
		const done = Number(p.bytes_done) || 0;
		const total = Number(p.bytes_total) || 0;
		const rate = Number(p.rate) || 0;
		const parts = [];
		if (total > 0)
			parts.push(Math.floor((100 * Math.min(done, total)) / total) + '%');
		else if (done > 0)
			parts.push(bytes(done));
		if (rate > 0) {
			parts.push(bytes(rate) + '/s');
			if (total > done)
				parts.push('ETA ' + duration((total - done) / rate));
		}
		if (p.updated_ms && Date.now() - p.updated_ms > 120000)
			parts.push('(no report for ' + duration((Date.now() - p.updated_ms) / 1000) + ')');
		return parts.join(' \u00b7 ');
	}

	function stateBadge(node) {
		const s = el('span', { class: 'state state-' + (node.state || 'unknown'), text: node.state || '?' });
		if (!node.held)
			return s;
		return el('span', null, s, ' ', el('span', { class: 'badge held', text: 'held' }));
	}

	function buildRow(mac) {
		const node = app.nodes.get(mac);
		const gpus = app.gpus.get(mac);
		const tr = el('tr', { 'data-mac': mac, 'data-state': node.state || '' });
		tr.append(
			el('td', { class: 'mono' }, el('a', { href: '#/node/' + mac, text: mac })),
			el('td', { text: node.hostname || '' }),
			el('td', { class: 'state-cell' }, stateBadge(node)),
			el('td', { text: node.profile || '' }),
			el('td', { text: node.arch || '' }),
			el('td', { class: 'num gpus', text: gpus === undefined || gpus === null ? '' : String(gpus) }),
			...progressCells(mac));
		return tr;
	}

	function renderRow(mac) {
		const old = app.rows.get(mac);
		if (!app.nodes.has(mac))
			return;
		if (!old) {
			renderTable();
			return;
		}
		const tr = buildRow(mac);
		tr.hidden = !matches(app.nodes.get(mac), filters());
		old.replaceWith(tr);
		app.rows.set(mac, tr);
		updateCount();
	}

	function renderTable() {
		const tbody = document.querySelector('#nodes tbody');
		const f = filters();
		clear(tbody);
		app.rows.clear();
		for (const mac of [...app.nodes.keys()].sort()) {
			const tr = buildRow(mac);
			tr.hidden = !matches(app.nodes.get(mac), f);
			tbody.append(tr);
			app.rows.set(mac, tr);
		}
		renderFilters();
		updateCount();
	}

	function updateCount() {
		let shown = 0;
		for (const tr of app.rows.values())
			if (!tr.hidden)
				shown++;
		$('count').textContent = shown + ' of ' + app.nodes.size + ' nodes';
		$('empty').hidden = shown !== 0;
	}

	function applyFilters() {
		const f = filters();
		for (const [mac, tr] of app.rows)
			tr.hidden = !matches(app.nodes.get(mac), f);
		updateCount();
		const q = new URLSearchParams();
		if (f.state)
			q.set('state', f.state);
		if (f.profile)
			q.set('profile', f.profile);
		const h = '#/' + (q.toString() ? '?' + q : '');
		if (location.hash !== h && !location.hash.startsWith('#/node/'))
			history.replaceState(null, '', h);
	}

	/* ---- node page ----------------------------------------------------- */

	async function showNode(mac) {
		app.current = mac;
		app.currentDoc = null;
		$('nodes-view').hidden = true;
		$('node-view').hidden = false;
		$('n-title').textContent = mac;
		try {
			const doc = await api('GET', '/nodes/' + mac);
			if (app.current !== mac)
				return;
			absorb(doc);
			renderNode(doc);
		} catch (e) {
			if (app.current === mac)
				toast('Cannot show ' + mac + ': ' + e.message, true);
		}
	}

	function kv(dl, key, value) {
		if (value === undefined || value === null || value === '')
			return;
		dl.append(el('dt', { text: key }), el('dd', { text: String(value) }));
	}

	function table(headers, rows) {
		const t = el('table', { class: 'grid small' });
		t.append(el('thead', null, el('tr', null, ...headers.map((h) => el('th', { text: h })))));
		const tb = el('tbody');
		for (const r of rows)
			tb.append(el('tr', null, ...r.map((c) => el('td', { text: c === undefined || c === null ? '' : String(c) }))));
		t.append(tb);
		return t;
	}

	function renderNode(doc) {
		if (!doc || !doc.mac)
			return;
		const mac = doc.mac.toLowerCase();
		if (app.current !== mac)
			return;
		app.currentDoc = doc;
		$('n-title').textContent = (doc.hostname ? doc.hostname + ' \u2014 ' : '') + mac;
		const st = $('n-state');
		st.textContent = doc.state || '?';
		st.className = 'state state-' + (doc.state || 'unknown');
		$('n-held').hidden = !doc.held;
		$('a-hold').disabled = !!doc.held;
		$('a-release').disabled = !doc.held;
		$('a-reimage').disabled = doc.state === 'retired';

		const dl = $('n-summary');
		clear(dl);
		kv(dl, 'MAC', mac);
		kv(dl, 'Hostname', doc.hostname);
		kv(dl, 'IP', doc.ip);
		kv(dl, 'Architecture', doc.arch);
		kv(dl, 'Profile', doc.profile);
		kv(dl, 'Rack', doc.rack);
		if (doc.labels && typeof doc.labels === 'object' && Object.keys(doc.labels).length)
			kv(dl, 'Labels', Object.entries(doc.labels).map(([k, v]) => k + '=' + v).join(', '));
		kv(dl, 'Held', doc.held ? 'yes' : null);
		if (doc.desired && typeof doc.desired === 'object') {
			const d = doc.desired;
			const img = d.image && typeof d.image === 'object'
				? [d.image.name, d.image.version].filter(Boolean).join(' ')
				: [d.image, d.version].filter(Boolean).join(' ');
			kv(dl, 'Desired image', img);
			const sets = d.package_sets;
			if (Array.isArray(sets) && sets.length)
				kv(dl, 'Desired package sets', sets.join(', '));
		}
		kv(dl, 'First seen', doc.first_seen ? when(doc.first_seen * 1000) : null);
		kv(dl, 'Last seen', doc.last_seen ? when(doc.last_seen * 1000) : null);

		renderNodeProgress(mac);
		renderInstalled(doc.installed, doc.reboot_required);
		renderInventory(doc.inventory);
		renderEvents(Array.isArray(doc.events) ? doc.events : []);
	}

	function renderNodeProgress(mac) {
		const node = app.nodes.get(mac);
		const p = liveProgress(mac);
		const card = $('n-progress');
		if (!p) {
			card.hidden = true;
			return;
		}
		card.hidden = false;
		$('np-step').textContent = (p.state || node.state) + (p.step ? ': ' + p.step : '');
		const done = Number(p.bytes_done) || 0;
		const total = Number(p.bytes_total) || 0;
		const bar = $('np-bar');
		bar.max = total > 0 ? total : 1;
		bar.value = total > 0 ? Math.min(done, total) : 0;
		$('np-text').textContent = (total > 0 ? bytes(done) + ' of ' + bytes(total) + ' \u00b7 ' : '') + progressText(p);
	}

	function renderInstalled(inst, rebootRequired) {
		const box = $('n-installed');
		clear(box);
		if (!inst || typeof inst !== 'object') {
			box.append(el('p', { class: 'muted', text: 'Nothing reported yet: the node\u2019s agent reports its image and packages once it is installed.' }));
			return;
		}
		const dl = el('dl', { class: 'kv' });
		if (inst.image && typeof inst.image === 'object')
			kv(dl, 'Image', [inst.image.name, inst.image.version].filter(Boolean).join(' '));
		if (rebootRequired)
			kv(dl, 'Reboot required', 'yes');
		box.append(dl);
		const pk = Array.isArray(inst.packages) ? inst.packages : [];
		if (pk.length)
			box.append(table(['Package', 'Version'], pk.map((p) => [p.name, p.version])));
		else
			box.append(el('p', { class: 'muted', text: 'No packages installed by rackboot.' }));
	}

	function renderInventory(inv) {
		const box = $('n-inventory');
		clear(box);
		if (!inv || typeof inv !== 'object') {
			box.append(el('p', { class: 'muted', text: 'No inventory yet: the agent sends one on the node\u2019s discovery boot.' }));
			return;
		}
		const dl = el('dl', { class: 'kv' });
		const dmi = inv.dmi || {};
		kv(dl, 'System', [dmi.sys_vendor, dmi.product_name].filter(Boolean).join(' '));
		kv(dl, 'Serial', dmi.product_serial);
		kv(dl, 'BIOS', dmi.bios_version);
		kv(dl, 'Firmware', inv.uefi === true ? 'UEFI' : inv.uefi === false ? 'BIOS' : null);
		const cpu = inv.cpu || {};
		if (cpu.model)
			kv(dl, 'CPU', cpu.model + (cpu.sockets ? ' \u00d7 ' + cpu.sockets : '') +
				(cpu.cores ? ', ' + cpu.cores + ' cores' : '') + (cpu.threads ? ', ' + cpu.threads + ' threads' : ''));
		if (inv.memory && inv.memory.total_bytes)
			kv(dl, 'Memory', bytes(inv.memory.total_bytes));
		const g = gpuCount(inv);
		kv(dl, 'GPUs', g);
		box.append(dl);
		if (Array.isArray(inv.disks) && inv.disks.length) {
			box.append(el('h4', { text: 'Disks' }));
			box.append(table(['Name', 'Size', 'Model', 'Serial', 'Type'], inv.disks.map((d) => [
				d.name, bytes(d.size_bytes !== undefined ? d.size_bytes : d.size), d.model, d.serial,
				d.rotational === true ? 'HDD' : d.rotational === false ? 'SSD' : ''])));
		}
		if (Array.isArray(inv.nics) && inv.nics.length) {
			box.append(el('h4', { text: 'Network' }));
			box.append(table(['Name', 'MAC', 'Speed', 'Link', 'Driver'], inv.nics.map((n) => [
				n.name, n.mac, n.speed_mbps ? n.speed_mbps + ' Mb/s' : '', n.carrier ? 'up' : 'down', n.driver])));
		}
		if (Array.isArray(inv.gpus) && inv.gpus.length) {
			box.append(el('h4', { text: 'GPUs' }));
			box.append(table(['PCI address', 'Vendor', 'Device', 'Driver', 'NUMA'], inv.gpus.map((d) => [
				d.address, d.vendor, d.device, d.driver, d.numa_node])));
		}
	}

	function renderEvents(events) {
		const tb = document.querySelector('#n-events tbody');
		clear(tb);
		for (const e of events.slice(-MAX_EVENTS).reverse())
			tb.append(eventRow(e));
	}

	function eventRow(e) {
		return el('tr', null, el('td', { class: 'mono', text: when(e.ts_ms) }),
			el('td', { text: e.event || '' }), el('td', { text: e.detail || '' }));
	}

	/* ---- actions ------------------------------------------------------- */

	const ACTIONS = {
		reimage: {
			title: 'Reimage %s?',
			text: 'The node will be wiped and imaged again from its profile the next time it network-boots. Everything on its disks is lost.',
			button: 'Reimage',
		},
		hold: {
			title: 'Hold %s?',
			text: 'A held node gets no provisioning and no updates until it is released.',
			button: 'Hold',
		},
		release: {
			title: 'Release %s?',
			text: 'The node is provisioned and updated again as its profile says.',
			button: 'Release',
		},
	};

	function askAction(action) {
		const mac = app.current;
		const a = ACTIONS[action];
		if (!mac || !a)
			return;
		app.pendingAction = { action, mac };
		$('c-title').textContent = a.title.replace('%s', mac);
		$('c-text').textContent = a.text;
		$('c-wipe-row').hidden = action !== 'reimage';
		$('c-error').textContent = '';
		$('c-ok').textContent = a.button;
		$('c-ok').disabled = false;
		$('confirm').showModal();
	}

	async function confirmAction() {
		const p = app.pendingAction;
		if (!p)
			return;
		const body = p.action === 'reimage' ? { wipe: $('c-wipe').value } : {};
		$('c-ok').disabled = true;
		$('c-error').textContent = '';
		try {
			const doc = await api('POST', '/nodes/' + p.mac + '/actions/' + p.action, body);
			app.pendingAction = null;
			$('confirm').close();
			toast(p.action + ' ' + p.mac + ': done' + (doc && doc.state ? ' (state ' + doc.state + ')' : ''));
			if (doc && doc.mac) {
				absorb(doc);
				renderRow(p.mac);
			}
			if (app.current === p.mac)
				showNode(p.mac);
		} catch (e) {
			$('c-ok').disabled = false;
			$('c-error').textContent = e.status ? e.message + ' (' + e.status + ')' : e.message;
		}
	}

	/* ---- live events --------------------------------------------------- */

	/* One server-sent event (the parser below hands it over). */
	function onEvent(type, data) {
		let d;
		try {
			d = JSON.parse(data);
		} catch (e) {
			return;
		}
		if (!d || typeof d.mac !== 'string')
			return;
		const mac = d.mac.toLowerCase();
		let node = app.nodes.get(mac);
		if (!node) {
			node = { mac, state: d.state || 'new' };
			app.nodes.set(mac, node);
			wantDetail(mac);
			renderTable();
		}
		if (typeof d.state === 'string' && d.state)
			node.state = d.state;
		if (d.progress && typeof d.progress === 'object')
			app.progress.set(mac, d.progress);
		else if (type === 'progress' && typeof d.bytes_done === 'number')
			app.progress.set(mac, d);
		if (typeof d.held === 'boolean')
			node.held = d.held;
		renderRow(mac);
		if (app.current === mac) {
			renderNodeProgress(mac);
			const st = $('n-state');
			st.textContent = node.state;
			st.className = 'state state-' + node.state;
			if (type !== 'progress' && d.event) {
				const tb = document.querySelector('#n-events tbody');
				tb.prepend(eventRow(d));
				while (tb.rows.length > MAX_EVENTS)
					tb.deleteRow(tb.rows.length - 1);
			}
		}
		/* A stored event may change more than the state (inventory, profile,
		 * hostname, labels): re-read the node, at most every 500 ms. */
		if (type !== 'progress')
			refreshNodeSoon(mac);
	}

	function refreshNodeSoon(mac) {
		if (app.nodeTimers.has(mac))
			return;
		app.nodeTimers.set(mac, setTimeout(() => {
			app.nodeTimers.delete(mac);
			wantDetail(mac);
		}, 500));
	}

	/* Server-sent events parser (the WHATWG "event stream interpretation"):
	 * lines end in CRLF, LF or CR; "field: value"; a blank line dispatches;
	 * lines starting with ':' are comments (keep-alives). Returns the
	 * unparsed tail. */
	function parseSSE(buf, ev) {
		for (;;) {
			const m = /\r\n|\n|\r/.exec(buf);
			if (!m)
				return buf;
			/* A lone CR at the very end may be half of a CRLF. */
			if (m[0] === '\r' && m.index === buf.length - 1)
				return buf;
			const line = buf.slice(0, m.index);
			buf = buf.slice(m.index + m[0].length);
			if (line === '') {
				if (ev.id !== null)
					app.lastEventId = ev.id;
				if (ev.data.length)
					onEvent(ev.type || 'message', ev.data.join('\n'));
				ev.type = '';
				ev.data = [];
				ev.id = null;
				continue;
			}
			if (line[0] === ':')
				continue;
			const colon = line.indexOf(':');
			const field = colon < 0 ? line : line.slice(0, colon);
			let value = colon < 0 ? '' : line.slice(colon + 1);
			if (value[0] === ' ')
				value = value.slice(1);
			if (field === 'data')
				ev.data.push(value);
			else if (field === 'event')
				ev.type = value;
			else if (field === 'id' && !value.includes('\0'))
				ev.id = value;
			else if (field === 'retry' && /^\d+$/.test(value))
				ev.retry = Number(value);
		}
	}

	function stopStream() {
		app.streamGen++;
		if (app.stream)
			app.stream.abort();
		app.stream = null;
	}

	async function startStream() {
		stopStream();
		const gen = app.streamGen;
		let backoff = 1000;
		let first = true;
		while (gen === app.streamGen && app.token) {
			const ctl = new AbortController();
			app.stream = ctl;
			const ev = { type: '', data: [], id: null, retry: null };
			try {
				const headers = { Authorization: 'Bearer ' + app.token, Accept: 'text/event-stream' };
				if (app.lastEventId !== null)
					headers['Last-Event-ID'] = app.lastEventId;
				const r = await fetch(API + '/events', { headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit' });
				if (r.status === 401 || r.status === 403) {
					signOut('The server refused the token on the event stream (' + r.status + ').');
					return;
				}
				if (!r.ok || !r.body)
					throw new Error('HTTP ' + r.status);
				setConn('live', 'live');
				backoff = 1000;
				/* After a gap, the list may be stale (new nodes, progress
				 * which is not replayed): read it again now that the stream
				 * is open, so nothing falls between the two. */
				if (!first)
					loadNodes().catch(() => {});
				first = false;
				const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
				let buf = '';
				for (;;) {
					const { value, done } = await reader.read();
					if (done)
						break;
					buf = parseSSE(buf + value, ev);
					if (buf.length > 1 << 20)
						throw new Error('event line over 1 MiB');
				}
				throw new Error('stream ended');
			} catch (e) {
				if (gen !== app.streamGen || !app.token)
					return;
				if (ev.retry)
					backoff = Math.max(ev.retry, 250);
				setConn('wait', 'reconnecting in ' + Math.round(backoff / 1000) + 's');
				await sleep(backoff);
				backoff = Math.min(backoff * 2, 15000);
			}
		}
	}

	/* ---- routing and start --------------------------------------------- */

	function route() {
		if (!app.token)
			return;
		const h = location.hash || '#/';
		const m = /^#\/node\/([0-9a-fA-F:-]{17})$/.exec(h);
		if (m) {
			showNode(m[1].toLowerCase().replace(/-/g, ':'));
			return;
		}
		app.current = null;
		app.currentDoc = null;
		const q = new URLSearchParams(h.includes('?') ? h.slice(h.indexOf('?') + 1) : '');
		renderFilters();
		for (const [key, id] of [['state', 'f-state'], ['profile', 'f-profile']]) {
			const v = q.get(key) || '';
			const sel = $(id);
			if (v && ![...sel.options].some((o) => o.value === v))
				sel.append(el('option', { value: v, text: v }));
			sel.value = v;
		}
		$('node-view').hidden = true;
		$('nodes-view').hidden = false;
		applyFilters();
	}

	function start() {
		$('login-form').addEventListener('submit', (e) => {
			e.preventDefault();
			const t = $('token').value.trim();
			$('login-error').textContent = '';
			if (t)
				signIn(t);
		});
		$('signout').addEventListener('click', () => signOut(''));
		for (const id of ['f-state', 'f-profile'])
			$(id).addEventListener('change', applyFilters);
		$('f-text').addEventListener('input', applyFilters);
		for (const b of document.querySelectorAll('.actions button[data-action]'))
			b.addEventListener('click', () => askAction(b.getAttribute('data-action')));
		$('c-cancel').addEventListener('click', () => {
			app.pendingAction = null;
			$('confirm').close();
		});
		$('c-ok').addEventListener('click', confirmAction);
		$('confirm').addEventListener('close', () => { app.pendingAction = null; });
		window.addEventListener('hashchange', route);
		/* Progress rows age ("no report for ..."): redraw them now and then. */
		setInterval(() => {
			for (const [mac] of app.progress)
				if (app.rows.has(mac))
					renderRow(mac);
		}, 30000);

		const saved = sessionStorage.getItem(TOKEN_KEY);
		if (saved)
			signIn(saved);
		else
			signOut('');
	}

	if (document.readyState === 'loading')
		document.addEventListener('DOMContentLoaded', start);
	else
		start();
})();
