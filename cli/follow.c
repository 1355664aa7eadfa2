/* Live views of the rackboot CLI on the event stream: `events -f` (one line
 * per event, with live progress bars for the nodes being imaged kept at
 * the bottom of a terminal) and `node ls --watch` (the node table redrawn
 * as states and progress change). Both reconnect after a lost connection
 * with Last-Event-ID, so no stored event is missed; both end with 4 when
 * the token is refused.
 *
 * Owns the views' in-memory state (the bars, the node list). Writes only
 * to stdout and stderr. Redraws are throttled (at most 4 a second) so a
 * busy stream does not flood a terminal or a log. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/util.h"

#define BARS_MAX        64
#define REDRAW_MIN_USEC 250000

/* ---- events -f --------------------------------------------------------------- */

struct bar {
	char mac[18];
	json_t *progress; /* the latest progress object */
};

struct events_view {
	struct cli *cli;
	bool follow;
	struct bar bars[BARS_MAX];
	size_t n_bars;
	unsigned drawn;    /* bar lines on the screen now */
	time_t last_event; /* for the end of the history without -f */
	time_t started;
	struct {
		char mac[18];
		time_t at;
	} printed[BARS_MAX]; /* non-terminal: when a node's progress was last printed */
};

static void clear_bars(struct events_view *v)
{
	if (v->drawn) {
		printf("\033[%uA\033[J", v->drawn);
		v->drawn = 0;
	}
}

static void draw_bars(struct events_view *v)
{
	char line[200];

	for (size_t i = 0; i < v->n_bars; i++) {
		printf("  %s  %s\n", v->bars[i].mac,
		       cli_progress_text(v->bars[i].progress, 30, line, sizeof(line)));
		v->drawn++;
	}
	fflush(stdout);
}

static struct bar *bar_find(struct events_view *v, const char *mac)
{
	for (size_t i = 0; i < v->n_bars; i++)
		if (!strcmp(v->bars[i].mac, mac))
			return &v->bars[i];
	return NULL;
}

static void bar_remove(struct events_view *v, const char *mac)
{
	struct bar *b = bar_find(v, mac);

	if (!b)
		return;
	json_decref(b->progress);
	*b = v->bars[--v->n_bars];
}

static void event_line(const char *type, json_t *d)
{
	time_t ts = (time_t)(json_integer_value(json_object_get(d, "ts_ms")) / 1000);
	char when[32];
	struct tm tm;

	if (!localtime_r(&ts, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(when, sizeof(when), "?");
	printf("%s  %s  %-12s  %-16s  %s\n", when, json_string_value(json_object_get(d, "mac")),
	       json_string_value(json_object_get(d, "state")),
	       json_string_value(json_object_get(d, "event")),
	       json_string_value(json_object_get(d, "detail")));
}

/* Not a terminal: a node's progress at most every 5 s, as a line. */
static bool progress_due(struct events_view *v, const char *mac, time_t now)
{
	size_t i, oldest = 0;

	for (i = 0; i < BARS_MAX && v->printed[i].mac[0]; i++) {
		if (!strcmp(v->printed[i].mac, mac)) {
			if (now - v->printed[i].at < 5)
				return false;
			v->printed[i].at = now;
			return true;
		}
		if (v->printed[i].at < v->printed[oldest].at)
			oldest = i;
	}
	i = i < BARS_MAX ? i : oldest;
	snprintf(v->printed[i].mac, sizeof(v->printed[i].mac), "%s", mac);
	v->printed[i].at = now;
	return true;
}

static int on_event(const char *type, const char *id, const char *data, void *ud)
{
	struct events_view *v = ud;
	json_t *d = json_loads(data, 0, NULL);
	const char *mac = json_string_value(json_object_get(d, "mac"));
	time_t now = time(NULL);
	char line[200];

	v->last_event = now;
	if (!d || !mac) {
		json_decref(d);
		return 0; /* not ours: ignore, as the format asks */
	}
	if (v->cli->json) {
		/* One JSON object per line: the data, its type and id. */
		json_object_set_new(d, "type", json_string(type));
		if (id)
			json_object_set_new(d, "id", json_integer(strtoll(id, NULL, 10)));
		else
			json_object_del(d, "id");
		json_dumpf(d, stdout, JSON_COMPACT);
		putchar('\n');
		fflush(stdout);
		json_decref(d);
		return 0;
	}
	if (!strcmp(type, "progress")) {
		json_t *p = json_object_get(d, "progress");
		struct bar *b = bar_find(v, mac);

		if (!v->cli->tty) {
			if (progress_due(v, mac, now))
				printf("progress  %s  %s\n", mac,
				       cli_progress_text(p, 20, line, sizeof(line)));
		} else if (cli_state_busy(json_string_value(json_object_get(p, "state")))) {
			if (!b && v->n_bars < BARS_MAX) {
				b = &v->bars[v->n_bars++];
				snprintf(b->mac, sizeof(b->mac), "%s", mac);
				b->progress = NULL;
			}
			if (b) {
				json_decref(b->progress);
				b->progress = json_incref(p);
			}
			clear_bars(v);
			draw_bars(v);
		} else {
			bar_remove(v, mac);
			clear_bars(v);
			draw_bars(v);
		}
		fflush(stdout);
		json_decref(d);
		return 0;
	}
	if (v->cli->tty)
		clear_bars(v);
	event_line(type, d);
	if (v->cli->tty) {
		if (!cli_state_busy(json_string_value(json_object_get(d, "state"))))
			bar_remove(v, mac);
		draw_bars(v);
	}
	fflush(stdout);
	json_decref(d);
	return 0;
}

/* Without -f: the history ends when nothing came for a second. */
static int on_tick(void *ud)
{
	struct events_view *v = ud;
	time_t now = time(NULL);

	if (v->follow)
		return 0;
	return now - (v->last_event ? v->last_event : v->started) >= 2 ? 1 : 0;
}

int cli_events(struct cli *cli, bool follow, int64_t since)
{
	struct events_view v = { .cli = cli, .follow = follow, .started = time(NULL) };
	int64_t last_id = since;
	unsigned backoff = 1;
	char err[700];
	int r;

	for (;;) {
		r = client_stream(&cli->c, "/api/v1/events", &last_id, on_event, on_tick, &v, err,
		                  sizeof(err));
		if (!follow || r == CLI_AUTH || r == CLI_REFUSED)
			break;
		/* Lost: reconnect where we left off (the events in between are
		 * resent from the registry). */
		if (cli->tty)
			clear_bars(&v);
		fprintf(stderr, "rackboot: %s; reconnecting in %us\n",
		        r == CLI_OK ? "the event stream ended" : err, backoff);
		sleep(backoff);
		backoff = RB_MIN(backoff * 2, 10u);
		if (last_id < 0)
			last_id = -1;
	}
	for (size_t i = 0; i < v.n_bars; i++)
		json_decref(v.bars[i].progress);
	if (r != CLI_OK)
		return cli_fail(r, "%s", err);
	return CLI_OK;
}

/* ---- node ls --watch ------------------------------------------------------------ */

struct watch {
	struct cli *cli;
	const char *query;
	json_t *nodes; /* the list, kept up to date */
	bool dirty, refetch;
	uint64_t last_draw;
	int fetch_rc;
	char err[700];
};

static int fetch(struct watch *w)
{
	struct response r;
	char path[4200];
	int rc;

	snprintf(path, sizeof(path), "/api/v1/nodes%s%s", *w->query ? "?" : "", w->query);
	rc = client_request(&w->cli->c, "GET", path, NULL, &r);
	if (rc != CLI_OK) {
		snprintf(w->err, sizeof(w->err), "%s", r.err);
		json_decref(r.doc);
		return rc;
	}
	json_decref(w->nodes);
	w->nodes = json_incref(json_object_get(r.doc, "nodes"));
	json_decref(r.doc);
	w->refetch = false;
	w->dirty = true;
	return w->nodes ? CLI_OK : CLI_CONNECT;
}

static void draw(struct watch *w, bool force)
{
	uint64_t now = rb_now_usec();

	if (!w->dirty || (!force && now - w->last_draw < REDRAW_MIN_USEC))
		return;
	w->last_draw = now;
	w->dirty = false;
	if (w->cli->json) {
		json_dumpf(w->nodes, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		if (w->cli->tty)
			fputs("\033[H\033[2J", stdout);
		else
			putchar('\n');
		cli_print_nodes(stdout, w->nodes, (int64_t)time(NULL));
		if (w->cli->tty)
			printf("\n%zu nodes; watching %s (Ctrl-C to stop)\n",
			       json_array_size(w->nodes), w->cli->c.server);
	}
	fflush(stdout);
}

static json_t *node_of(struct watch *w, const char *mac)
{
	size_t i;
	json_t *n;

	json_array_foreach(w->nodes, i, n) if (!strcmp(json_string_value(json_object_get(n, "mac")),
	                                               mac)) return n;
	return NULL;
}

static int on_watch_event(const char *type, const char *id, const char *data, void *ud)
{
	struct watch *w = ud;
	json_t *d = json_loads(data, 0, NULL), *n;
	const char *mac = json_string_value(json_object_get(d, "mac"));

	if (!d || !mac) {
		json_decref(d);
		return 0;
	}
	n = node_of(w, mac);
	if (!strcmp(type, "progress")) {
		if (n) {
			json_object_set(n, "progress", json_object_get(d, "progress"));
			w->dirty = true;
		}
	} else if (!strncmp(json_string_value(json_object_get(d, "event")), "op.", 3) || !n) {
		/* An operator change (labels, hold, ...) or a node we do not
		 * list yet: the list is fetched again (filters may apply). */
		w->refetch = true;
	} else {
		json_object_set(n, "state", json_object_get(d, "state"));
		w->dirty = true;
	}
	json_decref(d);
	if (w->refetch && (w->fetch_rc = fetch(w)) != CLI_OK)
		return 1;
	draw(w, false);
	return 0;
}

static int on_watch_tick(void *ud)
{
	struct watch *w = ud;

	/* Ages ("5s ago") move on; a throttled change is drawn now. */
	if (rb_now_usec() - w->last_draw > 5000000)
		w->dirty = true;
	draw(w, true);
	return 0;
}

int cli_watch_nodes(struct cli *cli, const char *query)
{
	struct watch w = { .cli = cli, .query = query };
	int64_t last_id = -1;
	unsigned backoff = 1;
	char err[700];
	int r;

	r = fetch(&w);
	if (r != CLI_OK)
		return cli_fail(r, "%s", w.err);
	draw(&w, true);
	for (;;) {
		r = client_stream(&cli->c, "/api/v1/events", &last_id, on_watch_event,
		                  on_watch_tick, &w, err, sizeof(err));
		if (w.fetch_rc != CLI_OK) {
			r = w.fetch_rc;
			snprintf(err, sizeof(err), "%s", w.err);
		}
		if (r == CLI_AUTH || r == CLI_REFUSED)
			break;
		fprintf(stderr, "rackboot: %s; reconnecting in %us\n",
		        r == CLI_OK ? "the event stream ended" : err, backoff);
		sleep(backoff);
		backoff = RB_MIN(backoff * 2, 10u);
		w.fetch_rc = fetch(&w); /* what changed meanwhile */
		if (w.fetch_rc == CLI_OK)
			draw(&w, true);
	}
	json_decref(w.nodes);
	return cli_fail(r, "%s", err);
}
