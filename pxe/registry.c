/* Node registry on SQLite. Owns two connections (one for the writer thread,
 * one for reads and the few synchronous writes under a mutex), the
 * in-memory note queue and the writer thread. The hot paths (DHCP, TFTP,
 * HTTP) only ever take the queue mutex for a memcpy; the disk is touched by
 * the writer, in batched transactions. The synchronous writes (boot token,
 * inventory, agent state changes) are the ones a reply depends on.
 * Must never block a caller of registry_note() on I/O.
 *
 * Schema changes are additive and applied at open (migrate()), so a
 * registry.db of an older rackbootd keeps its nodes and events. */
#include "pxe/registry.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_CAP 8192
/* Identical notes (same MAC, event and detail) within this window are
 * coalesced: DHCP retransmissions and boot-storm repeats would otherwise
 * make the writer thread the busiest thing in the server. */
#define COALESCE_MS    1000
#define COALESCE_SLOTS 4096
/* The writer lets notes gather this long before a transaction. */
#define BATCH_DELAY_US 20000

struct note {
	uint8_t mac[6];
	char arch[24];
	char ip[16];
	char event[24];
	char detail[160];
	int64_t ts_ms;
};

struct registry {
	sqlite3 *wdb, *rdb;
	pthread_mutex_t rlock; /* rdb */
	pthread_mutex_t qlock;
	pthread_cond_t qcond, done;
	struct note *q;
	size_t head, len;
	uint64_t queued, written, dropped, coalesced;
	struct {
		uint64_t key;
		int64_t ts_ms;
	} recent[COALESCE_SLOTS]; /* under qlock */
	bool stop;
	bool thread_started;
	pthread_t thread;
	void (*event_hook)(void *); /* under qlock; called after events are committed */
	void *event_hook_ud;
	unsigned hook_calls;      /* hook calls running now (qlock) */
	pthread_cond_t hook_idle; /* signalled when hook_calls drops to 0 */
};

static const char schema[] =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "CREATE TABLE IF NOT EXISTS nodes ("
        "  mac TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
        "  arch TEXT NOT NULL DEFAULT '', ip TEXT NOT NULL DEFAULT '',"
        "  state TEXT NOT NULL DEFAULT 'new', profile TEXT NOT NULL DEFAULT '',"
        "  hostname TEXT NOT NULL DEFAULT '', token_sha256 TEXT NOT NULL DEFAULT '',"
        "  labels TEXT NOT NULL DEFAULT '{}', rack TEXT NOT NULL DEFAULT '',"
        "  desired_image TEXT NOT NULL DEFAULT '', desired_version TEXT NOT NULL DEFAULT '',"
        "  desired_package_sets TEXT NOT NULL DEFAULT '', held INTEGER NOT NULL DEFAULT 0,"
        "  reimage_wipe TEXT NOT NULL DEFAULT '',"
        "  node_token_sha256 TEXT NOT NULL DEFAULT '', installed TEXT NOT NULL DEFAULT '',"
        "  reboot_required INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS events ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
        "  event TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');"
        "CREATE INDEX IF NOT EXISTS events_mac ON events(mac, id);"
        "CREATE TABLE IF NOT EXISTS inventory ("
        "  mac TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, doc TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS pkgset_state ("
        "  name TEXT PRIMARY KEY, current TEXT NOT NULL DEFAULT '',"
        "  previous TEXT NOT NULL DEFAULT '', pinned TEXT NOT NULL DEFAULT '',"
        "  ts_ms INTEGER NOT NULL DEFAULT 0);";

/* Columns added after the first release: (name, definition), the same as
 * in the CREATE TABLE above. A database of an older release lacks them:
 * migrate() adds each one PRAGMA table_info does not list. */
static const char *const added_node_columns[][2] = {
	{ "token_sha256", "TEXT NOT NULL DEFAULT ''" },
	/* operator (api_ops.c) */
	{ "labels", "TEXT NOT NULL DEFAULT '{}'" },
	{ "rack", "TEXT NOT NULL DEFAULT ''" },
	{ "desired_image", "TEXT NOT NULL DEFAULT ''" },
	{ "desired_version", "TEXT NOT NULL DEFAULT ''" },
	{ "desired_package_sets", "TEXT NOT NULL DEFAULT ''" },
	{ "held", "INTEGER NOT NULL DEFAULT 0" },
	{ "reimage_wipe", "TEXT NOT NULL DEFAULT ''" },
	/* installed node (agent stages 2 and 3) */
	{ "node_token_sha256", "TEXT NOT NULL DEFAULT ''" },
	{ "installed", "TEXT NOT NULL DEFAULT ''" },
	{ "reboot_required", "INTEGER NOT NULL DEFAULT 0" },
};

static int64_t now_ms(void)
{
	return (int64_t)(rb_wall_usec() / 1000);
}

/* Tells the listener (the event stream) that events were committed.
 * Called with no registry lock held. */
static void event_hook_call(struct registry *reg)
{
	void (*fn)(void *);
	void *ud;

	pthread_mutex_lock(&reg->qlock);
	fn = reg->event_hook;
	ud = reg->event_hook_ud;
	if (fn)
		reg->hook_calls++;
	pthread_mutex_unlock(&reg->qlock);
	if (!fn)
		return;
	fn(ud);
	pthread_mutex_lock(&reg->qlock);
	if (--reg->hook_calls == 0)
		pthread_cond_broadcast(&reg->hook_idle);
	pthread_mutex_unlock(&reg->qlock);
}

static int open_db(const char *path, sqlite3 **ret)
{
	sqlite3 *db;

	if (sqlite3_open_v2(path, &db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK) {
		log_error("registry %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	*ret = db;
	return 0;
}

static int has_column(sqlite3 *db, const char *table, const char *col, bool *ret)
{
	sqlite3_stmt *st = NULL;
	char sql[64];
	int s;

	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	*ret = false;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *name = sqlite3_column_text(st, 1);

		if (name && !strcmp((const char *)name, col))
			*ret = true;
	}
	sqlite3_finalize(st);
	return s == SQLITE_DONE ? 0 : -EIO;
}

/* In one IMMEDIATE transaction, so that two servers opening one old
 * database at once do not both add a column. */
static int migrate(sqlite3 *db, const char *path)
{
	char sql[160];
	bool has;

	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	for (size_t i = 0; i < RB_ARRAY_SIZE(added_node_columns); i++) {
		if (has_column(db, "nodes", added_node_columns[i][0], &has) < 0)
			goto fail;
		if (has)
			continue;
		snprintf(sql, sizeof(sql), "ALTER TABLE nodes ADD COLUMN %s %s",
		         added_node_columns[i][0], added_node_columns[i][1]);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			goto fail;
		log_info("registry %s: added column nodes.%s", path, added_node_columns[i][0]);
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
fail:
	log_error("registry %s: cannot update the schema: %s", path, sqlite3_errmsg(db));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -EIO;
}

static void write_batch(struct registry *reg, struct note *batch, size_t n)
{
	static const char up_sql[] = "INSERT INTO nodes(mac, first_seen, last_seen, arch, ip) "
	                             "VALUES(?1, ?2, ?2, ?3, ?4) "
	                             "ON CONFLICT(mac) DO UPDATE SET last_seen = ?2,"
	                             " arch = CASE WHEN ?3 = '' THEN arch ELSE ?3 END,"
	                             " ip = CASE WHEN ?4 = '' THEN ip ELSE ?4 END";
	static const char ev_sql[] =
	        "INSERT INTO events(mac, ts_ms, event, detail) VALUES(?1, ?2, ?3, ?4)";
	sqlite3_stmt *up = NULL, *ev = NULL;

	if (sqlite3_exec(reg->wdb, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_prepare_v2(reg->wdb, up_sql, -1, &up, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(reg->wdb, ev_sql, -1, &ev, NULL) != SQLITE_OK)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		char mac[18];

		rb_mac_format(batch[i].mac, mac);
		sqlite3_bind_text(up, 1, mac, -1, SQLITE_STATIC);
		sqlite3_bind_int64(up, 2, batch[i].ts_ms / 1000);
		sqlite3_bind_text(up, 3, batch[i].arch, -1, SQLITE_STATIC);
		sqlite3_bind_text(up, 4, batch[i].ip, -1, SQLITE_STATIC);
		sqlite3_bind_text(ev, 1, mac, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ev, 2, batch[i].ts_ms);
		sqlite3_bind_text(ev, 3, batch[i].event, -1, SQLITE_STATIC);
		sqlite3_bind_text(ev, 4, batch[i].detail, -1, SQLITE_STATIC);
		if (sqlite3_step(up) != SQLITE_DONE || sqlite3_step(ev) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(up);
		sqlite3_reset(ev);
	}
	sqlite3_finalize(up);
	sqlite3_finalize(ev);
	if (sqlite3_exec(reg->wdb, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return;
fail:
	log_warn("registry: lost %zu events: %s", n, sqlite3_errmsg(reg->wdb));
	sqlite3_finalize(up);
	sqlite3_finalize(ev);
	sqlite3_exec(reg->wdb, "ROLLBACK", NULL, NULL, NULL);
}

static void *writer_main(void *arg)
{
	struct registry *reg = arg;
	struct note *batch = malloc(sizeof(*batch) * 512);
	sigset_t all;

	/* Signals belong to the server's signalfd, never to this thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	if (!batch)
		abort(); /* start-up path: no registry without it */
	pthread_mutex_lock(&reg->qlock);
	for (;;) {
		size_t n = 0;

		while (reg->len == 0 && !reg->stop)
			pthread_cond_wait(&reg->qcond, &reg->qlock);
		if (reg->len == 0 && reg->stop)
			break;
		if (!reg->stop && reg->len < 512) {
			pthread_mutex_unlock(&reg->qlock);
			usleep(BATCH_DELAY_US);
			pthread_mutex_lock(&reg->qlock);
		}
		while (reg->len > 0 && n < 512) {
			batch[n++] = reg->q[reg->head];
			reg->head = (reg->head + 1) % QUEUE_CAP;
			reg->len--;
		}
		pthread_mutex_unlock(&reg->qlock);
		write_batch(reg, batch, n);
		event_hook_call(reg);
		pthread_mutex_lock(&reg->qlock);
		reg->written += n;
		pthread_cond_broadcast(&reg->done);
	}
	pthread_mutex_unlock(&reg->qlock);
	free(batch);
	return NULL;
}

int registry_open(const char *path, struct registry **ret)
{
	struct registry *reg = calloc(1, sizeof(*reg));
	char *err = NULL;
	int r;

	if (!reg)
		return -ENOMEM;
	pthread_mutex_init(&reg->rlock, NULL);
	pthread_mutex_init(&reg->qlock, NULL);
	pthread_cond_init(&reg->qcond, NULL);
	pthread_cond_init(&reg->done, NULL);
	pthread_cond_init(&reg->hook_idle, NULL);
	reg->q = calloc(QUEUE_CAP, sizeof(*reg->q));
	if (!reg->q) {
		r = -ENOMEM;
		goto err;
	}
	r = open_db(path, &reg->wdb);
	if (r < 0)
		goto err;
	if (sqlite3_exec(reg->wdb, schema, NULL, NULL, &err) != SQLITE_OK) {
		log_error("registry %s: cannot create schema: %s", path, err ? err : "?");
		sqlite3_free(err);
		r = -EIO;
		goto err;
	}
	r = migrate(reg->wdb, path);
	if (r < 0)
		goto err;
	r = open_db(path, &reg->rdb);
	if (r < 0)
		goto err;
	if (pthread_create(&reg->thread, NULL, writer_main, reg) != 0) {
		r = -EAGAIN;
		goto err;
	}
	reg->thread_started = true;
	*ret = reg;
	return 0;
err:
	registry_free(reg);
	return r;
}

void registry_free(struct registry *reg)
{
	if (!reg)
		return;
	if (reg->thread_started) {
		pthread_mutex_lock(&reg->qlock);
		reg->stop = true;
		pthread_cond_signal(&reg->qcond);
		pthread_mutex_unlock(&reg->qlock);
		pthread_join(reg->thread, NULL);
	}
	sqlite3_close(reg->wdb);
	sqlite3_close(reg->rdb);
	free(reg->q);
	pthread_mutex_destroy(&reg->rlock);
	pthread_mutex_destroy(&reg->qlock);
	pthread_cond_destroy(&reg->qcond);
	pthread_cond_destroy(&reg->done);
	pthread_cond_destroy(&reg->hook_idle);
	free(reg);
}

static void copy_field(char *dst, size_t n, const char *src)
{
	/* Only printable ASCII reaches the registry: these strings come from
	 * the network and end up in JSON, logs and a web page. */
	size_t o = 0;

	for (; src && *src && o + 1 < n; src++)
		dst[o++] = ((unsigned char)*src >= 0x20 && (unsigned char)*src < 0x7f) ? *src : '?';
	dst[o] = '\0';
}

static uint64_t note_key(const struct note *n)
{
	/* FNV-1a over MAC, event and detail; a collision only merges two notes
	 * of one second, and only when both have the same slot. */
	uint64_t h = 0xcbf29ce484222325ull;
	const char *parts[] = { n->event, n->detail };

	for (size_t i = 0; i < 6; i++)
		h = (h ^ n->mac[i]) * 0x100000001b3ull;
	for (size_t p = 0; p < 2; p++)
		for (const char *c = parts[p]; *c; c++)
			h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
	return h | 1; /* 0 marks an empty slot */
}

void registry_note(struct registry *reg, const uint8_t mac[6], const char *arch, const char *ip,
                   const char *event, const char *fmt, ...)
{
	struct note n = { .ts_ms = now_ms() };
	char detail[sizeof(n.detail)];
	va_list ap;

	if (!reg)
		return;
	memcpy(n.mac, mac, 6);
	copy_field(n.arch, sizeof(n.arch), arch);
	copy_field(n.ip, sizeof(n.ip), ip);
	copy_field(n.event, sizeof(n.event), event);
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	copy_field(n.detail, sizeof(n.detail), detail);

	uint64_t key = note_key(&n);
	size_t slot = key % COALESCE_SLOTS;

	pthread_mutex_lock(&reg->qlock);
	if (reg->recent[slot].key == key && n.ts_ms - reg->recent[slot].ts_ms < COALESCE_MS) {
		reg->coalesced++;
	} else if (reg->len == QUEUE_CAP) {
		reg->dropped++;
	} else {
		reg->recent[slot].key = key;
		reg->recent[slot].ts_ms = n.ts_ms;
		reg->q[(reg->head + reg->len) % QUEUE_CAP] = n;
		reg->len++;
		reg->queued++;
		/* The writer only sleeps on an empty queue. */
		if (reg->len == 1)
			pthread_cond_signal(&reg->qcond);
	}
	pthread_mutex_unlock(&reg->qlock);
}

void registry_flush(struct registry *reg)
{
	pthread_mutex_lock(&reg->qlock);
	uint64_t target = reg->queued;

	while (reg->written < target)
		pthread_cond_wait(&reg->done, &reg->qlock);
	pthread_mutex_unlock(&reg->qlock);
}

uint64_t registry_dropped(struct registry *reg)
{
	uint64_t d;

	pthread_mutex_lock(&reg->qlock);
	d = reg->dropped;
	pthread_mutex_unlock(&reg->qlock);
	return d;
}

static void col_copy(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	snprintf(dst, n, "%s", s ? (const char *)s : "");
}

int registry_node_get(struct registry *reg, const uint8_t mac[6], struct registry_node *ret)
{
	static const char sql[] =
	        "SELECT state, profile, arch, hostname, ip, first_seen, last_seen, token_sha256 "
	        "FROM nodes WHERE mac = ?1";
	struct registry_node node = { 0 };
	sqlite3_stmt *st = NULL;
	char m[18];
	int r = -EIO, s;

	rb_mac_format(mac, m);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s == SQLITE_DONE) {
		r = -ENOENT;
		goto out;
	}
	if (s != SQLITE_ROW)
		goto out;
	memcpy(node.mac, mac, 6);
	col_copy(node.state, sizeof(node.state), st, 0);
	col_copy(node.profile, sizeof(node.profile), st, 1);
	col_copy(node.arch, sizeof(node.arch), st, 2);
	col_copy(node.hostname, sizeof(node.hostname), st, 3);
	col_copy(node.ip, sizeof(node.ip), st, 4);
	node.first_seen = sqlite3_column_int64(st, 5);
	node.last_seen = sqlite3_column_int64(st, 6);
	col_copy(node.token_sha256, sizeof(node.token_sha256), st, 7);
	*ret = node;
	r = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	return r;
}

int registry_node_set(struct registry *reg, const uint8_t mac[6], const char *state,
                      const char *profile)
{
	static const char sql[] = "INSERT INTO nodes(mac, first_seen, last_seen, state, profile) "
	                          "VALUES(?1, ?2, ?2, COALESCE(?3, 'new'), COALESCE(?4, '')) "
	                          "ON CONFLICT(mac) DO UPDATE SET state = COALESCE(?3, state),"
	                          " profile = COALESCE(?4, profile)";
	sqlite3_stmt *st = NULL;
	char m[18];
	int r = -EIO;

	rb_mac_format(mac, m);
	/* Through the writer connection's queue order: flush first so a
	 * state set after a note is not overtaken by it. */
	registry_flush(reg);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now_ms() / 1000);
	if (state)
		sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
	if (profile)
		sqlite3_bind_text(st, 4, profile, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_DONE)
		r = 0;
out:
	if (r < 0)
		log_debug("registry: set %s: %s", m, sqlite3_errmsg(reg->rdb));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	return r;
}

int registry_token_set(struct registry *reg, const uint8_t mac[6], const char *sha256_hex)
{
	static const char sql[] = "INSERT INTO nodes(mac, first_seen, last_seen, token_sha256) "
	                          "VALUES(?1, ?2, ?2, ?3) "
	                          "ON CONFLICT(mac) DO UPDATE SET token_sha256 = ?3";
	sqlite3_stmt *st = NULL;
	char m[18];
	int r = -EIO;

	rb_mac_format(mac, m);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now_ms() / 1000);
	sqlite3_bind_text(st, 3, sha256_hex, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_DONE)
		r = 0;
out:
	if (r < 0)
		log_debug("registry: token %s: %s", m, sqlite3_errmsg(reg->rdb));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	return r;
}

/* Runs one statement with texts bound as ?1..?n and num as ?n+1: 0, -ENOENT
 * when it changed no row, -EIO. Caller holds rlock. */
static int exec_bound(sqlite3 *db, const char *sql, const char *const *texts, size_t n_texts,
                      int64_t num)
{
	sqlite3_stmt *st = NULL;
	int r = -EIO;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	for (size_t i = 0; i < n_texts; i++)
		sqlite3_bind_text(st, (int)i + 1, texts[i], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, (int)n_texts + 1, num);
	if (sqlite3_step(st) == SQLITE_DONE)
		r = sqlite3_changes(db) > 0 ? 0 : -ENOENT;
	sqlite3_finalize(st);
	return r;
}

/* UPDATE of the node row, then an event, atomically. */
static int sync_change(struct registry *reg, const uint8_t mac[6], const char *update_sql,
                       const char *value, const char *event, const char *detail)
{
	static const char ev_sql[] =
	        "INSERT INTO events(mac, event, detail, ts_ms) VALUES(?1, ?2, ?3, ?4)";
	char m[18], ev[24], det[512];
	int64_t ts = now_ms();
	int r;

	rb_mac_format(mac, m);
	copy_field(ev, sizeof(ev), event);
	copy_field(det, sizeof(det), detail);
	/* After everything noted before it, like registry_node_set(). */
	registry_flush(reg);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_exec(reg->rdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		r = -EIO;
		goto out;
	}
	{
		const char *up[] = { m, value };
		const char *evt[] = { m, ev, det };

		r = exec_bound(reg->rdb, update_sql, up, 2, ts);
		if (r == 0)
			r = exec_bound(reg->rdb, ev_sql, evt, 3, ts);
	}
	if (r == 0 && sqlite3_exec(reg->rdb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		r = -EIO;
	if (r < 0)
		sqlite3_exec(reg->rdb, "ROLLBACK", NULL, NULL, NULL);
out:
	if (r == -EIO)
		log_debug("registry: %s %s: %s", event, m, sqlite3_errmsg(reg->rdb));
	pthread_mutex_unlock(&reg->rlock);
	if (r == 0)
		event_hook_call(reg);
	return r;
}

int registry_node_transition(struct registry *reg, const uint8_t mac[6], const char *state,
                             const char *event, const char *detail)
{
	return sync_change(reg, mac,
	                   "UPDATE nodes SET state = ?2, last_seen = ?3 / 1000 WHERE mac = ?1",
	                   state, event, detail ? detail : "");
}

int registry_inventory_set(struct registry *reg, const uint8_t mac[6], const char *doc, size_t len)
{
	char detail[48];
	char *copy;
	int r;

	/* The node must exist; the inventory row is then replaced. Done as an
	 * UPDATE of the node (last_seen) plus the upsert, in one transaction. */
	copy = strndup(doc, len);
	if (!copy)
		return -ENOMEM;
	snprintf(detail, sizeof(detail), "%zu bytes", len);
	r = sync_change(reg, mac,
	                "INSERT INTO inventory(mac, doc, ts_ms) "
	                "SELECT mac, ?2, ?3 FROM nodes WHERE mac = ?1 "
	                "ON CONFLICT(mac) DO UPDATE SET doc = ?2, ts_ms = ?3",
	                copy, "agent.inventory", detail);
	free(copy);
	return r;
}

int registry_inventory_get(struct registry *reg, const uint8_t mac[6], json_t **ret)
{
	static const char sql[] = "SELECT doc FROM inventory WHERE mac = ?1";
	sqlite3_stmt *st = NULL;
	json_t *doc = NULL;
	char m[18];
	int r = -EIO, s;

	rb_mac_format(mac, m);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		const void *d = sqlite3_column_blob(st, 0);
		int n = sqlite3_column_bytes(st, 0);

		doc = d ? json_loadb(d, (size_t)n, 0, NULL) : NULL;
		r = doc ? 0 : -ENOENT;
	} else if (s == SQLITE_DONE) {
		r = -ENOENT;
	}
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r < 0)
		return r;
	*ret = doc;
	return 0;
}

/* Operator columns, selected after the first 8 of NODE_COLS. */
#define OP_COLS                                                                                    \
	"labels, rack, desired_image, desired_version, desired_package_sets, held, "               \
	"reimage_wipe"
#define OP_COL0 8
/* A summary of the stored inventory for node lists (null without one, or
 * when the stored document does not parse), the column after OP_COLS. */
#define HW_COL                                                                                     \
	"(SELECT CASE WHEN json_valid(doc) THEN json_object("                                      \
	"'gpus', json_extract(doc, '$.counts.gpus'), "                                             \
	"'cpu_model', json_extract(doc, '$.cpu.model'), "                                          \
	"'memory_bytes', json_extract(doc, '$.memory.total_bytes'), "                              \
	"'disks', json_extract(doc, '$.counts.disks')) END "                                       \
	"FROM inventory WHERE inventory.mac = nodes.mac)"
#define HW_COL0 (OP_COL0 + 7)

static json_t *node_row_json_base(sqlite3_stmt *st)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "mac",
	                 (const char *)sqlite3_column_text(st, 0), "state",
	                 (const char *)sqlite3_column_text(st, 1), "profile",
	                 (const char *)sqlite3_column_text(st, 2), "arch",
	                 (const char *)sqlite3_column_text(st, 3), "hostname",
	                 (const char *)sqlite3_column_text(st, 4), "ip",
	                 (const char *)sqlite3_column_text(st, 5), "first_seen",
	                 (json_int_t)sqlite3_column_int64(st, 6), "last_seen",
	                 (json_int_t)sqlite3_column_int64(st, 7));
}

/* A stored JSON text as a value of the wanted type, else fallback (new). */
static json_t *stored_json(const unsigned char *text, bool object, json_t *fallback)
{
	json_t *v = text && *text ? json_loads((const char *)text, JSON_DECODE_ANY, NULL) : NULL;

	if (v && (object ? json_is_object(v) : json_is_array(v))) {
		json_decref(fallback);
		return v;
	}
	json_decref(v);
	return fallback;
}

static const char *col_text(sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	return s ? (const char *)s : "";
}

/* The node object of a row: NODE_COLS, the operator fields included. */
static json_t *node_row_json(sqlite3_stmt *st)
{
	json_t *n = node_row_json_base(st), *op;

	if (!n)
		return NULL;
	op = json_pack("{s:o, s:s, s:{s:s, s:s, s:o}, s:b, s:s, s:o}", "labels",
	               stored_json(sqlite3_column_text(st, OP_COL0), true, json_object()), "rack",
	               col_text(st, OP_COL0 + 1), "desired", "image", col_text(st, OP_COL0 + 2),
	               "version", col_text(st, OP_COL0 + 3), "package_sets",
	               stored_json(sqlite3_column_text(st, OP_COL0 + 4), false, json_null()),
	               "held", sqlite3_column_int(st, OP_COL0 + 5) != 0, "reimage_wipe",
	               col_text(st, OP_COL0 + 6), "hardware",
	               stored_json(sqlite3_column_text(st, HW_COL0), true, json_null()));
	if (!op || json_object_update(n, op) < 0) {
		json_decref(op);
		json_decref(n);
		return NULL;
	}
	json_decref(op);
	return n;
}

#define NODE_COLS                                                                                  \
	"mac, state, profile, arch, hostname, ip, first_seen, last_seen, " OP_COLS ", " HW_COL

static int dump(json_t *doc, char **ret)
{
	char *s;

	if (!doc)
		return -ENOMEM;
	s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

int registry_nodes_json(struct registry *reg, char **ret)
{
	json_t *arr = NULL;
	int r = registry_nodes_doc(reg, &arr);

	if (r < 0)
		return r;
	return dump(json_pack("{s:o}", "nodes", arr), ret);
}

int registry_node_doc(struct registry *reg, const uint8_t mac[6], size_t max_events, json_t **ret)
{
	static const char isql[] = "SELECT doc FROM inventory WHERE mac = ?1";
	static const char nsql[] = "SELECT " NODE_COLS " FROM nodes WHERE mac = ?1";
	static const char esql[] = "SELECT ts_ms, event, detail FROM "
	                           "(SELECT id, ts_ms, event, detail FROM events WHERE mac = ?1 "
	                           "ORDER BY id DESC LIMIT ?2) ORDER BY id";
	sqlite3_stmt *st = NULL;
	json_t *node = NULL, *evs = NULL;
	char m[18];
	int r = -EIO, s;

	rb_mac_format(mac, m);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, nsql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s != SQLITE_ROW) {
		r = s == SQLITE_DONE ? -ENOENT : -EIO;
		goto out;
	}
	node = node_row_json(st);
	sqlite3_finalize(st);
	st = NULL;
	evs = json_array();
	if (!node || !evs) {
		r = -ENOMEM;
		goto out;
	}
	if (sqlite3_prepare_v2(reg->rdb, esql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max_events);
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(evs,
		                      json_pack("{s:I, s:s, s:s}", "ts_ms",
		                                (json_int_t)sqlite3_column_int64(st, 0), "event",
		                                (const char *)sqlite3_column_text(st, 1), "detail",
		                                (const char *)sqlite3_column_text(st, 2)));
	if (s != SQLITE_DONE)
		goto out;
	json_object_set_new(node, "events", evs);
	evs = NULL;
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(reg->rdb, isql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		/* Stored by registry_inventory_set() from a checked document; a
		 * row that no longer parses shows as null. */
		const void *d = sqlite3_column_blob(st, 0);
		int n = sqlite3_column_bytes(st, 0);
		json_t *inv = d ? json_loadb(d, (size_t)n, 0, NULL) : NULL;

		json_object_set_new(node, "inventory", inv ? inv : json_null());
	} else if (s == SQLITE_DONE) {
		json_object_set_new(node, "inventory", json_null());
	} else {
		goto out;
	}
	r = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	json_decref(evs);
	if (r < 0) {
		json_decref(node);
		return r;
	}
	*ret = node;
	return 0;
}

int registry_node_json(struct registry *reg, const uint8_t mac[6], size_t max_events, char **ret)
{
	json_t *doc = NULL;
	int r = registry_node_doc(reg, mac, max_events, &doc);

	if (r < 0)
		return r;
	return dump(doc, ret);
}

/* ---- operator --------------------------------------------------------------- */

/* Reads the node row and its operator fields. Caller holds rlock. */
static int read_node_op(sqlite3 *db, const uint8_t mac[6], struct registry_node *ret_node,
                        struct registry_operator *ret_op)
{
	static const char sql[] = "SELECT state, profile, arch, hostname, ip, first_seen, "
	                          "last_seen, token_sha256, " OP_COLS " FROM nodes WHERE mac = ?1";
	sqlite3_stmt *st = NULL;
	char m[18];
	int r = -EIO, s;

	rb_mac_format(mac, m);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s == SQLITE_DONE) {
		r = -ENOENT;
		goto out;
	}
	if (s != SQLITE_ROW)
		goto out;
	if (ret_node) {
		memset(ret_node, 0, sizeof(*ret_node));
		memcpy(ret_node->mac, mac, 6);
		col_copy(ret_node->state, sizeof(ret_node->state), st, 0);
		col_copy(ret_node->profile, sizeof(ret_node->profile), st, 1);
		col_copy(ret_node->arch, sizeof(ret_node->arch), st, 2);
		col_copy(ret_node->hostname, sizeof(ret_node->hostname), st, 3);
		col_copy(ret_node->ip, sizeof(ret_node->ip), st, 4);
		ret_node->first_seen = sqlite3_column_int64(st, 5);
		ret_node->last_seen = sqlite3_column_int64(st, 6);
		col_copy(ret_node->token_sha256, sizeof(ret_node->token_sha256), st, 7);
	}
	if (ret_op) {
		memset(ret_op, 0, sizeof(*ret_op));
		col_copy(ret_op->labels, sizeof(ret_op->labels), st, OP_COL0);
		if (!*ret_op->labels)
			snprintf(ret_op->labels, sizeof(ret_op->labels), "{}");
		col_copy(ret_op->rack, sizeof(ret_op->rack), st, OP_COL0 + 1);
		col_copy(ret_op->desired_image, sizeof(ret_op->desired_image), st, OP_COL0 + 2);
		col_copy(ret_op->desired_version, sizeof(ret_op->desired_version), st, OP_COL0 + 3);
		col_copy(ret_op->desired_package_sets, sizeof(ret_op->desired_package_sets), st,
		         OP_COL0 + 4);
		ret_op->held = sqlite3_column_int(st, OP_COL0 + 5) != 0;
		col_copy(ret_op->reimage_wipe, sizeof(ret_op->reimage_wipe), st, OP_COL0 + 6);
	}
	r = 0;
out:
	sqlite3_finalize(st);
	return r;
}

int registry_operator_get(struct registry *reg, const uint8_t mac[6],
                          struct registry_node *ret_node, struct registry_operator *ret_op)
{
	int r;

	pthread_mutex_lock(&reg->rlock);
	r = read_node_op(reg->rdb, mac, ret_node, ret_op);
	pthread_mutex_unlock(&reg->rlock);
	return r;
}

/* Binds the operator fields as ?first .. ?first+6. */
static void bind_op(sqlite3_stmt *st, int first, const struct registry_operator *op)
{
	sqlite3_bind_text(st, first, op->labels, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 1, op->rack, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 2, op->desired_image, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 3, op->desired_version, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 4, op->desired_package_sets, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, first + 5, op->held ? 1 : 0);
	sqlite3_bind_text(st, first + 6, op->reimage_wipe, -1, SQLITE_STATIC);
}

static int insert_event(sqlite3 *db, const char *mac, const char *event, const char *detail,
                        int64_t ts)
{
	static const char sql[] =
	        "INSERT INTO events(mac, event, detail, ts_ms) VALUES(?1, ?2, ?3, ?4)";
	char ev[24], det[512];
	const char *texts[] = { mac, ev, det };

	copy_field(ev, sizeof(ev), event);
	copy_field(det, sizeof(det), detail ? detail : "");
	return exec_bound(db, sql, texts, 3, ts);
}

int registry_operator_change(struct registry *reg, const uint8_t mac[6], registry_decide_fn decide,
                             void *ud)
{
	static const char sql[] =
	        "UPDATE nodes SET state = ?2, profile = ?3, hostname = ?4, "
	        "labels = ?5, rack = ?6, desired_image = ?7, desired_version = ?8, "
	        "desired_package_sets = ?9, held = ?10, reimage_wipe = ?11 "
	        "WHERE mac = ?1";
	struct registry_operator *op = malloc(sizeof(*op));
	struct registry_node node;
	char m[18], event[24] = "", detail[512] = "";
	sqlite3_stmt *st = NULL;
	int r;

	if (!op)
		return -ENOMEM;
	rb_mac_format(mac, m);
	registry_flush(reg);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_exec(reg->rdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		r = -EIO;
		goto out;
	}
	r = read_node_op(reg->rdb, mac, &node, op);
	if (r == 0)
		r = decide(&node, op, event, detail, ud);
	if (r < 0)
		goto rollback;
	r = -EIO;
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto rollback;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, node.state, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, node.profile, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, node.hostname, -1, SQLITE_STATIC);
	bind_op(st, 5, op);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto rollback;
	r = insert_event(reg->rdb, m, event, detail, now_ms());
	if (r == 0 && sqlite3_exec(reg->rdb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		r = -EIO;
	if (r == 0)
		goto out;
rollback:
	if (r == -EIO)
		log_debug("registry: operator change %s: %s", m, sqlite3_errmsg(reg->rdb));
	sqlite3_exec(reg->rdb, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	free(op);
	if (r == 0)
		event_hook_call(reg);
	return r;
}

int registry_node_register(struct registry *reg, const struct registry_node *node,
                           const struct registry_operator *op, const char *event,
                           const char *detail)
{
	static const char sql[] =
	        "INSERT INTO nodes(mac, first_seen, last_seen, state, profile, hostname, labels, "
	        "rack, desired_image, desired_version, desired_package_sets, held, reimage_wipe) "
	        "VALUES(?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
	sqlite3_stmt *st = NULL;
	int64_t ts = now_ms();
	char m[18];
	int r = -EIO, s;

	rb_mac_format(node->mac, m);
	registry_flush(reg);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_exec(reg->rdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto rollback;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, ts / 1000);
	sqlite3_bind_text(st, 3, *node->state ? node->state : "new", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, node->profile, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, node->hostname, -1, SQLITE_STATIC);
	bind_op(st, 6, op);
	s = sqlite3_step(st);
	if (s == SQLITE_CONSTRAINT) {
		r = -EEXIST;
		goto rollback;
	}
	if (s != SQLITE_DONE)
		goto rollback;
	r = insert_event(reg->rdb, m, event, detail, ts);
	if (r == 0 && sqlite3_exec(reg->rdb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		r = -EIO;
	if (r == 0)
		goto out;
rollback:
	if (r == -EIO)
		log_debug("registry: register %s: %s", m, sqlite3_errmsg(reg->rdb));
	sqlite3_exec(reg->rdb, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r == 0)
		event_hook_call(reg);
	return r;
}

int registry_nodes_doc(struct registry *reg, json_t **ret)
{
	static const char sql[] = "SELECT " NODE_COLS " FROM nodes ORDER BY mac";
	json_t *arr = json_array();
	sqlite3_stmt *st = NULL;
	int s, r = -EIO;

	if (!arr)
		return -ENOMEM;
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *n = node_row_json(st);

		if (!n || json_array_append_new(arr, n) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (s == SQLITE_DONE)
		r = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r < 0) {
		json_decref(arr);
		return r;
	}
	*ret = arr;
	return 0;
}

int registry_state_counts(struct registry *reg, json_t **ret, uint64_t *ret_held)
{
	static const char sql[] =
	        "SELECT state, count(*), sum(held != 0) FROM nodes GROUP BY state ORDER BY state";
	json_t *obj = json_object();
	sqlite3_stmt *st = NULL;
	uint64_t held = 0;
	int s, r = -EIO;

	if (!obj)
		return -ENOMEM;
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if (json_object_set_new(obj, col_text(st, 0),
		                        json_integer(sqlite3_column_int64(st, 1))) < 0) {
			r = -ENOMEM;
			goto out;
		}
		held += (uint64_t)sqlite3_column_int64(st, 2);
	}
	if (s == SQLITE_DONE)
		r = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r < 0) {
		json_decref(obj);
		return r;
	}
	*ret = obj;
	*ret_held = held;
	return 0;
}

/* ---- events ------------------------------------------------------------------ */

int registry_events_since(struct registry *reg, int64_t after_id, size_t limit, json_t **ret)
{
	static const char sql[] = "SELECT e.id, e.mac, e.ts_ms, e.event, e.detail, "
	                          "COALESCE(n.state, '') FROM events e "
	                          "LEFT JOIN nodes n ON n.mac = e.mac "
	                          "WHERE e.id > ?1 ORDER BY e.id LIMIT ?2";
	json_t *arr = json_array();
	sqlite3_stmt *st = NULL;
	int s, r = -EIO;

	if (!arr)
		return -ENOMEM;
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, after_id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *e = json_pack(
		        "{s:I, s:s, s:I, s:s, s:s, s:s}", "id",
		        (json_int_t)sqlite3_column_int64(st, 0), "mac", col_text(st, 1), "ts_ms",
		        (json_int_t)sqlite3_column_int64(st, 2), "event", col_text(st, 3), "detail",
		        col_text(st, 4), "state", col_text(st, 5));

		if (!e || json_array_append_new(arr, e) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (s == SQLITE_DONE)
		r = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r < 0) {
		json_decref(arr);
		return r;
	}
	*ret = arr;
	return 0;
}

int registry_last_event_id(struct registry *reg, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = -EIO;

	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, "SELECT COALESCE(max(id), 0) FROM events", -1, &st,
	                       NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		*ret = sqlite3_column_int64(st, 0);
		r = 0;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	return r;
}

void registry_set_event_hook(struct registry *reg, void (*fn)(void *), void *ud)
{
	pthread_mutex_lock(&reg->qlock);
	reg->event_hook = fn;
	reg->event_hook_ud = ud;
	/* A call of the previous hook may be running: when this returns, none
	 * is, so its owner may free what ud points to. */
	while (reg->hook_calls)
		pthread_cond_wait(&reg->hook_idle, &reg->qlock);
	pthread_mutex_unlock(&reg->qlock);
}

/* ---- installed node: the agent's long-lived token and what it reported ---- */

/* One UPDATE of the node's row with text ?1 (mac) and ?2, or -ENOENT. */
static int set_node_text(struct registry *reg, const char *sql, const uint8_t mac[6],
                         const char *text, int64_t num)
{
	const char *texts[2];
	char m[18];
	int r;

	rb_mac_format(mac, m);
	texts[0] = m;
	texts[1] = text;
	pthread_mutex_lock(&reg->rlock);
	r = exec_bound(reg->rdb, sql, texts, 2, num);
	if (r == -EIO)
		log_debug("registry: %s: %s", m, sqlite3_errmsg(reg->rdb));
	pthread_mutex_unlock(&reg->rlock);
	return r;
}

int registry_node_token_set(struct registry *reg, const uint8_t mac[6], const char *sha256_hex)
{
	return set_node_text(reg, "UPDATE nodes SET node_token_sha256 = ?2 WHERE mac = ?1", mac,
	                     sha256_hex, 0);
}

int registry_installed_set(struct registry *reg, const uint8_t mac[6], const char *installed,
                           int reboot_required)
{
	return set_node_text(reg,
	                     "UPDATE nodes SET installed = CASE WHEN ?2 IS NULL THEN installed "
	                     "ELSE ?2 END, reboot_required = CASE WHEN ?3 < 0 THEN "
	                     "reboot_required ELSE ?3 END WHERE mac = ?1",
	                     mac, installed, reboot_required);
}

int registry_installed_get(struct registry *reg, const uint8_t mac[6],
                           struct registry_installed *ret)
{
	static const char sql[] = "SELECT node_token_sha256, installed, reboot_required "
	                          "FROM nodes WHERE mac = ?1";
	struct registry_installed v = { 0 };
	sqlite3_stmt *st = NULL;
	char m[18];
	int r = -EIO, s;

	rb_mac_format(mac, m);
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s == SQLITE_DONE) {
		r = -ENOENT;
		goto out;
	}
	if (s != SQLITE_ROW)
		goto out;
	snprintf(v.node_token_sha256, sizeof(v.node_token_sha256), "%s", col_text(st, 0));
	/* Stored as the server wrote them; a row that no longer parses reads
	 * as nothing reported. */
	v.installed = stored_json(sqlite3_column_text(st, 1), true, NULL);
	v.reboot_required = sqlite3_column_int(st, 2) != 0;
	r = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r < 0) {
		registry_installed_fini(&v);
		return r;
	}
	*ret = v;
	return 0;
}

void registry_installed_fini(struct registry_installed *v)
{
	json_decref(v->installed);
	v->installed = NULL;
}

/* ---- package sets: the resolution handed out, the one before, a pin ---- */

int registry_pkgset_observe(struct registry *reg, const char *name, const char *resolution,
                            char **ret_pinned)
{
	/* previous moves only when current changes. Every plan and /desired
	 * poll comes here: the write (a lock shared with the writer thread)
	 * happens only when the resolution changed. */
	static const char up_sql[] =
	        "INSERT INTO pkgset_state(name, current, ts_ms) VALUES(?1, ?2, ?3) "
	        "ON CONFLICT(name) DO UPDATE SET previous = current, current = ?2, ts_ms = ?3 "
	        "WHERE current != ?2";
	static const char sel_sql[] = "SELECT current, pinned FROM pkgset_state WHERE name = ?1";
	const char *texts[] = { name, resolution };
	sqlite3_stmt *st = NULL;
	char *pinned = NULL;
	bool same = false;
	int r = -EIO, s;

	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sel_sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		goto out;
	if (s == SQLITE_ROW) {
		same = !strcmp(col_text(st, 0), resolution);
		/* The UPDATE below leaves pinned as it is. */
		if (*col_text(st, 1)) {
			pinned = strdup(col_text(st, 1));
			if (!pinned) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	sqlite3_finalize(st);
	st = NULL;
	r = same ? 0 : exec_bound(reg->rdb, up_sql, texts, 2, now_ms());
	if (r == -ENOENT) /* the WHERE found current equal after all */
		r = 0;
out:
	if (r == -EIO)
		log_debug("registry: package set %s: %s", name, sqlite3_errmsg(reg->rdb));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r < 0) {
		free(pinned);
		return r;
	}
	*ret_pinned = pinned;
	return 0;
}

int registry_pkgset_get(struct registry *reg, const char *name, json_t **ret)
{
	static const char sql[] =
	        "SELECT current, previous, pinned FROM pkgset_state WHERE name = ?1";
	static const char *const keys[] = { "current", "previous", "pinned" };
	sqlite3_stmt *st = NULL;
	json_t *doc = json_object();
	int r = -EIO, s;

	if (!doc)
		return -ENOMEM;
	pthread_mutex_lock(&reg->rlock);
	if (sqlite3_prepare_v2(reg->rdb, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	s = sqlite3_step(st);
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		goto out;
	r = -ENOMEM;
	for (int i = 0; i < 3; i++) {
		const unsigned char *t = s == SQLITE_ROW ? sqlite3_column_text(st, i) : NULL;

		if (json_object_set_new(doc, keys[i], stored_json(t, true, json_null())) < 0)
			goto out;
	}
	r = 0;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&reg->rlock);
	if (r < 0) {
		json_decref(doc);
		return r;
	}
	*ret = doc;
	return 0;
}

int registry_pkgset_pin(struct registry *reg, const char *name, bool rollback)
{
	const char *texts[] = { name };
	int r;

	pthread_mutex_lock(&reg->rlock);
	if (rollback)
		r = exec_bound(reg->rdb,
		               "UPDATE pkgset_state SET pinned = previous, ts_ms = ?2 "
		               "WHERE name = ?1 AND previous != ''",
		               texts, 1, now_ms());
	else
		r = exec_bound(reg->rdb,
		               "UPDATE pkgset_state SET pinned = '', ts_ms = ?2 WHERE name = ?1",
		               texts, 1, now_ms());
	if (r == -EIO)
		log_debug("registry: package set %s: %s", name, sqlite3_errmsg(reg->rdb));
	pthread_mutex_unlock(&reg->rlock);
	/* Unpinning a set never handed out changes nothing: not an error. */
	return r == -ENOENT && !rollback ? 0 : r;
}
