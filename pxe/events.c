/* Event hub of the operator stream. A thread follows the registry's events
 * table (woken by registry_set_event_hook() after every commit, and once a
 * second for heartbeats) and appends each new row, formatted once as an
 * SSE record ("id: N\nevent: node\ndata: {...}\n\n"), to a ring of the
 * last EVENTS_RING records; agent progress reports are appended by the API
 * thread that received them ("event: progress", no id). Subscribers read
 * the ring at their own pace through a cursor: memory does not grow with
 * the number of subscribers or with a slow one. A subscriber whose cursor
 * the ring overtook is cut off (-EPIPE) and may resume with Last-Event-ID,
 * served from the registry; so is a new subscriber asking for events
 * older than the ring. A subscriber with nothing to read is suspended
 * (its connection leaves MHD's poll set) and resumed when a record
 * arrives or its heartbeat is due; suspend and resume both happen under
 * the hub's lock, so a resume always follows its suspend.
 *
 * It also derives imaging durations for /metrics from the rows it sees:
 * first agent.wiping/agent.imaging of a node until agent.imaged or
 * agent.ready (agent.failed counts a failure).
 *
 * Owns the ring, the subscribers, the thread. Borrows the registry (which
 * must outlive it). Never blocks an API thread on the registry (only the
 * hub thread and catching-up readers query it), never logs above debug. */
#include "pxe/events.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "pxe/registry.h"

#define FETCH_BATCH   512
#define CATCHUP_BATCH 64
#define PEND_FILL     (48 * 1024) /* stop adding ring records to a buffer past this */
#define TRACK_MAX     1024        /* nodes whose imaging start is remembered */

const double events_imaging_bounds[EVENTS_IMAGING_BUCKETS] = { 30,   60,   120,  300, 600,
	                                                       1200, 1800, 3600, -1 /* +Inf */ };

struct record {
	uint64_t seq;
	int64_t id; /* registry event id; 0 for progress */
	char *text;
	size_t len;
};

struct events_sub {
	struct rb_events *ev;
	struct events_sub *prev, *next;
	const struct events_sub_ops *ops;
	void *ud;
	int64_t last_id; /* last stored event delivered (or asked for) */
	uint64_t seq;    /* next ring record (live) */
	bool live;       /* false: catching up from the registry */
	bool sleeping;
	uint64_t last_write_usec;
	char *pend; /* bytes not yet handed to the connection */
	size_t pend_len, pend_off, pend_cap;
};

struct track {
	uint8_t mac[6];
	bool used;
	int64_t start_ms;
};

struct rb_events {
	struct registry *reg;
	uint64_t heartbeat_usec;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool dirty, stop, closing, thread_started;
	pthread_t thread;
	struct record ring[EVENTS_RING];
	uint64_t head_seq;       /* seq of the next record */
	int64_t fetched_id;      /* highest registry id in the ring (hub thread) */
	int64_t evicted_max_id;  /* highest id no longer in the ring */
	struct events_sub *subs; /* list */
	size_t n_subs;
	struct events_stats st; /* imaging_* and counters */
	struct track track[TRACK_MAX];
};

/* ---- records ---------------------------------------------------------------- */

static char *sse_record(const char *type, int64_t id, json_t *data, size_t *ret_len)
{
	char *json = json_dumps(data, JSON_COMPACT), *out = NULL;
	int n;

	json_decref(data);
	if (!json)
		return NULL;
	if (id > 0)
		n = asprintf(&out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)id, type, json);
	else
		n = asprintf(&out, "event: %s\ndata: %s\n\n", type, json);
	free(json);
	if (n < 0)
		return NULL;
	*ret_len = (size_t)n;
	return out;
}

/* A registry row ({"id","mac","ts_ms","event","detail","state"}) as SSE. */
static char *stored_record(json_t *row, int64_t *ret_id, size_t *ret_len)
{
	*ret_id = json_integer_value(json_object_get(row, "id"));
	return sse_record("node", *ret_id, json_incref(row), ret_len);
}

static uint64_t oldest_seq(const struct rb_events *ev)
{
	return ev->head_seq > EVENTS_RING ? ev->head_seq - EVENTS_RING : 0;
}

/* Wakes sleeping subscribers that have something to do. Caller holds lock. */
static void wake_subs(struct rb_events *ev, uint64_t now)
{
	for (struct events_sub *s = ev->subs; s; s = s->next) {
		bool due = now - s->last_write_usec >= ev->heartbeat_usec;

		if (s->sleeping && (ev->closing || !s->live || s->seq < ev->head_seq || due)) {
			s->sleeping = false;
			s->ops->resume(s->ud);
		}
	}
}

/* Appends a record (takes text). Caller holds lock. */
static void ring_push(struct rb_events *ev, int64_t id, char *text, size_t len)
{
	struct record *r = &ev->ring[ev->head_seq % EVENTS_RING];

	if (r->text && r->id > ev->evicted_max_id)
		ev->evicted_max_id = r->id;
	free(r->text);
	r->seq = ev->head_seq++;
	r->id = id;
	r->text = text;
	r->len = len;
}

/* ---- imaging durations ------------------------------------------------------- */

static struct track *track_find(struct rb_events *ev, const uint8_t mac[6], bool add)
{
	struct track *free_slot = NULL, *oldest = NULL;

	for (size_t i = 0; i < TRACK_MAX; i++) {
		struct track *t = &ev->track[i];

		if (t->used && memcmp(t->mac, mac, 6) == 0)
			return t;
		if (!t->used && !free_slot)
			free_slot = t;
		if (t->used && (!oldest || t->start_ms < oldest->start_ms))
			oldest = t;
	}
	if (!add)
		return NULL;
	/* Full: forget the longest-running (most likely abandoned) one. */
	return free_slot ? free_slot : oldest;
}

/* Caller holds lock. */
static void track_event(struct rb_events *ev, json_t *row)
{
	const char *event = json_string_value(json_object_get(row, "event"));
	int64_t ts = json_integer_value(json_object_get(row, "ts_ms"));
	uint8_t mac[6];
	struct track *t;

	if (!event || rb_mac_parse(json_string_value(json_object_get(row, "mac")), mac) < 0)
		return;
	if (!strcmp(event, "agent.wiping") || !strcmp(event, "agent.imaging")) {
		if (track_find(ev, mac, false))
			return;
		t = track_find(ev, mac, true);
		memcpy(t->mac, mac, 6);
		t->used = true;
		t->start_ms = ts;
	} else if (!strcmp(event, "agent.imaged") || !strcmp(event, "agent.ready")) {
		double s;

		t = track_find(ev, mac, false);
		if (!t)
			return;
		t->used = false;
		s = ts > t->start_ms ? (double)(ts - t->start_ms) / 1000.0 : 0.0;
		ev->st.imaging_count++;
		ev->st.imaging_sum_s += s;
		for (size_t i = 0; i < EVENTS_IMAGING_BUCKETS; i++)
			if (events_imaging_bounds[i] < 0 || s <= events_imaging_bounds[i])
				ev->st.imaging_buckets[i]++;
	} else if (!strcmp(event, "agent.failed") || !strcmp(event, "op.reimage") ||
	           !strcmp(event, "op.retire")) {
		t = track_find(ev, mac, false);
		if (t) {
			t->used = false;
			if (!strcmp(event, "agent.failed"))
				ev->st.imaging_failed++;
		}
	}
}

/* ---- the hub thread ----------------------------------------------------------- */

/* Reads what the registry has after fetched_id into the ring. */
static void fetch_new(struct rb_events *ev)
{
	for (;;) {
		json_t *rows = NULL, *row;
		size_t i, n;

		if (registry_events_since(ev->reg, ev->fetched_id, FETCH_BATCH, &rows) < 0)
			return;
		n = json_array_size(rows);
		pthread_mutex_lock(&ev->lock);
		json_array_foreach(rows, i, row)
		{
			int64_t id;
			size_t len = 0;
			char *text = stored_record(row, &id, &len);

			if (id > ev->fetched_id)
				ev->fetched_id = id;
			track_event(ev, row);
			if (text)
				ring_push(ev, id, text, len);
		}
		wake_subs(ev, rb_now_usec());
		pthread_mutex_unlock(&ev->lock);
		json_decref(rows);
		if (n < FETCH_BATCH)
			return;
	}
}

static void *hub_main(void *arg)
{
	struct rb_events *ev = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&ev->lock);
	while (!ev->stop) {
		struct timespec ts;

		if (!ev->dirty) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&ev->cond, &ev->lock, &ts);
		}
		if (ev->stop)
			break;
		ev->dirty = false;
		pthread_mutex_unlock(&ev->lock);
		fetch_new(ev);
		pthread_mutex_lock(&ev->lock);
		wake_subs(ev, rb_now_usec()); /* heartbeats */
	}
	pthread_mutex_unlock(&ev->lock);
	return NULL;
}

static void on_registry_event(void *ud)
{
	struct rb_events *ev = ud;

	pthread_mutex_lock(&ev->lock);
	ev->dirty = true;
	pthread_cond_signal(&ev->cond);
	pthread_mutex_unlock(&ev->lock);
}

/* ---- lifecycle ---------------------------------------------------------------- */

int events_new(struct registry *reg, unsigned heartbeat_s, struct rb_events **ret)
{
	struct rb_events *ev = calloc(1, sizeof(*ev));
	int r;

	if (!ev)
		return -ENOMEM;
	ev->reg = reg;
	ev->heartbeat_usec = (uint64_t)(heartbeat_s ? heartbeat_s : EVENTS_HEARTBEAT_S) * 1000000;
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	r = registry_last_event_id(reg, &ev->fetched_id);
	if (r < 0)
		goto err;
	ev->evicted_max_id = ev->fetched_id; /* older events are the registry's */
	if (pthread_create(&ev->thread, NULL, hub_main, ev) != 0) {
		r = -EAGAIN;
		goto err;
	}
	ev->thread_started = true;
	registry_set_event_hook(reg, on_registry_event, ev);
	*ret = ev;
	return 0;
err:
	events_free(ev);
	return r;
}

void events_close_all(struct rb_events *ev)
{
	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	ev->closing = true;
	wake_subs(ev, rb_now_usec());
	pthread_mutex_unlock(&ev->lock);
}

void events_free(struct rb_events *ev)
{
	if (!ev)
		return;
	if (ev->thread_started) {
		registry_set_event_hook(ev->reg, NULL, NULL);
		pthread_mutex_lock(&ev->lock);
		ev->stop = true;
		pthread_cond_signal(&ev->cond);
		pthread_mutex_unlock(&ev->lock);
		pthread_join(ev->thread, NULL);
	}
	/* Subscribers still listed belong to connections that are gone with
	 * the HTTP server; nothing calls them any more. */
	while (ev->subs) {
		struct events_sub *s = ev->subs;

		ev->subs = s->next;
		free(s->pend);
		free(s);
	}
	for (size_t i = 0; i < EVENTS_RING; i++)
		free(ev->ring[i].text);
	pthread_cond_destroy(&ev->cond);
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}

void events_publish_progress(struct rb_events *ev, const uint8_t mac[6], const char *state,
                             const char *step, const char *message, uint64_t bytes_done,
                             uint64_t bytes_total, uint64_t rate, int64_t updated_ms)
{
	char m[18];
	size_t len = 0;
	char *text;

	if (!ev)
		return;
	rb_mac_format(mac, m);
	text = sse_record(
	        "progress", 0,
	        json_pack("{s:s, s:s, s:s, s:s, s:I, s:{s:s, s:s, s:I, s:I, s:I, s:s, s:I}}", "mac",
	                  m, "state", state, "event", "progress", "detail", step, "ts_ms",
	                  (json_int_t)updated_ms, "progress", "state", state, "step", step,
	                  "bytes_done", (json_int_t)bytes_done, "bytes_total",
	                  (json_int_t)bytes_total, "rate", (json_int_t)rate, "message", message,
	                  "updated_ms", (json_int_t)updated_ms),
	        &len);
	if (!text)
		return; /* out of memory: a progress update is not worth more */
	pthread_mutex_lock(&ev->lock);
	ring_push(ev, 0, text, len);
	wake_subs(ev, rb_now_usec());
	pthread_mutex_unlock(&ev->lock);
}

void events_get_stats(struct rb_events *ev, struct events_stats *ret)
{
	pthread_mutex_lock(&ev->lock);
	*ret = ev->st;
	ret->subscribers = ev->n_subs;
	pthread_mutex_unlock(&ev->lock);
}

/* ---- subscribers -------------------------------------------------------------- */

static int pend_add(struct events_sub *s, const char *data, size_t len)
{
	if (s->pend_len + len > s->pend_cap) {
		size_t cap = RB_MAX(s->pend_cap * 2, s->pend_len + len);
		char *p = realloc(s->pend, cap);

		if (!p)
			return -ENOMEM;
		s->pend = p;
		s->pend_cap = cap;
	}
	memcpy(s->pend + s->pend_len, data, len);
	s->pend_len += len;
	return 0;
}

int events_subscribe(struct rb_events *ev, int64_t last_id, const struct events_sub_ops *ops,
                     void *ud, struct events_sub **ret)
{
	/* The first bytes tell the client that the stream is live and how
	 * long to wait before reconnecting. */
	static const char hello[] = ": rackboot events\nretry: 3000\n\n";
	struct events_sub *s = calloc(1, sizeof(*s));
	int r = 0;

	if (!s)
		return -ENOMEM;
	s->ev = ev;
	s->ops = ops;
	s->ud = ud;
	if (pend_add(s, hello, sizeof(hello) - 1) < 0) {
		free(s);
		return -ENOMEM;
	}
	if (last_id >= 0) {
		/* An id beyond the registry's (another registry, or made up)
		 * would hide every event up to it: resume from now instead. */
		int64_t max_id = 0;

		if (registry_last_event_id(ev->reg, &max_id) == 0 && last_id > max_id)
			last_id = max_id;
	}
	pthread_mutex_lock(&ev->lock);
	if (ev->closing)
		r = -ESHUTDOWN;
	else if (ev->n_subs >= EVENTS_MAX_SUBSCRIBERS) {
		ev->st.refused_full++;
		r = -EBUSY;
	}
	if (r == 0) {
		s->last_write_usec = rb_now_usec();
		s->seq = ev->head_seq;
		s->live = last_id < 0;
		s->last_id = last_id < 0 ? ev->fetched_id : last_id;
		s->next = ev->subs;
		if (ev->subs)
			ev->subs->prev = s;
		ev->subs = s;
		ev->n_subs++;
	}
	pthread_mutex_unlock(&ev->lock);
	if (r < 0) {
		free(s->pend);
		free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void events_unsubscribe(struct events_sub *s)
{
	struct rb_events *ev;

	if (!s)
		return;
	ev = s->ev;
	pthread_mutex_lock(&ev->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		ev->subs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	ev->n_subs--;
	pthread_mutex_unlock(&ev->lock);
	free(s->pend);
	free(s);
}

/* Catching up: stored events after last_id from the registry, or the
 * switch to the ring once it holds everything after last_id. Called
 * without the lock; returns with it held. */
static int catch_up(struct events_sub *s)
{
	struct rb_events *ev = s->ev;
	json_t *rows = NULL, *row;
	size_t i;
	int r;

	pthread_mutex_lock(&ev->lock);
	if (s->last_id >= ev->evicted_max_id) {
		/* Everything after last_id is in the ring (or not fetched yet):
		 * continue there, at the first record after it. */
		uint64_t q = oldest_seq(ev);

		while (q < ev->head_seq && ev->ring[q % EVENTS_RING].id <= s->last_id)
			q++;
		s->seq = q;
		s->live = true;
		return 0;
	}
	pthread_mutex_unlock(&ev->lock);
	r = registry_events_since(ev->reg, s->last_id, CATCHUP_BATCH, &rows);
	pthread_mutex_lock(&ev->lock);
	if (r < 0)
		return r;
	if (json_array_size(rows) == 0) {
		/* Deleted rows, or an id from another registry: go live. */
		s->last_id = ev->evicted_max_id;
		json_decref(rows);
		return 0;
	}
	json_array_foreach(rows, i, row)
	{
		int64_t id;
		size_t len = 0;
		char *text = stored_record(row, &id, &len);

		r = text ? pend_add(s, text, len) : -ENOMEM;
		free(text);
		if (r < 0)
			break;
		s->last_id = id;
	}
	json_decref(rows);
	return r;
}

/* Fills the pending buffer from the ring. Caller holds lock. 0, or -EPIPE
 * when the ring overtook the subscriber. */
static int fill_live(struct events_sub *s)
{
	struct rb_events *ev = s->ev;

	if (s->seq < oldest_seq(ev)) {
		ev->st.dropped_slow++;
		return -EPIPE;
	}
	while (s->seq < ev->head_seq && s->pend_len < PEND_FILL) {
		const struct record *rec = &ev->ring[s->seq % EVENTS_RING];

		s->seq++;
		if (rec->id > 0 && rec->id <= s->last_id)
			continue; /* sent while catching up */
		if (pend_add(s, rec->text, rec->len) < 0)
			return -ENOMEM;
		if (rec->id > 0)
			s->last_id = rec->id;
	}
	return 0;
}

ssize_t events_sub_read(struct events_sub *s, char *buf, size_t max)
{
	struct rb_events *ev = s->ev;
	size_t n;
	int r = 0;

	if (s->pend_off == s->pend_len) {
		uint64_t now = rb_now_usec();

		s->pend_off = s->pend_len = 0;
		pthread_mutex_lock(&ev->lock);
		if (!s->live && !ev->closing) {
			pthread_mutex_unlock(&ev->lock);
			r = catch_up(s); /* returns locked */
		}
		if (ev->closing) {
			pthread_mutex_unlock(&ev->lock);
			return -EPIPE;
		}
		if (r == 0 && s->live)
			r = fill_live(s);
		if (r == 0 && s->pend_len == 0 && now - s->last_write_usec >= ev->heartbeat_usec)
			r = pend_add(s, ": ping\n\n", 8);
		if (r < 0) {
			pthread_mutex_unlock(&ev->lock);
			return -EPIPE;
		}
		if (s->pend_len == 0) {
			/* Under the lock: a resume cannot overtake this. */
			s->sleeping = true;
			s->ops->suspend(s->ud);
			pthread_mutex_unlock(&ev->lock);
			return 0;
		}
		s->last_write_usec = now;
		pthread_mutex_unlock(&ev->lock);
	}
	n = RB_MIN(max, s->pend_len - s->pend_off);
	memcpy(buf, s->pend + s->pend_off, n);
	s->pend_off += n;
	return (ssize_t)n;
}
