/* The operator event hub (events.c) against a real registry: a live
 * subscriber sleeps (suspend) and is woken (resume) by a progress report
 * and by stored events, Last-Event-ID catch-up from the registry, a
 * subscriber that falls more than the ring behind is cut off, the
 * subscriber limit, heartbeats, shutdown; imaging durations and their
 * Prometheus text (metrics.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/util.h"
#include "pxe/events.h"
#include "pxe/metrics.h"
#include "pxe/registry.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint8_t mac1[6] = { 0x52, 0x54, 0x00, 0xee, 0x00, 0x01 };

struct fixture {
	char dir[32], db[64];
	struct registry *reg;
	struct rb_events *ev;
};

struct fake_conn {
	atomic_int suspends, resumes;
};

static void fake_suspend(void *ud)
{
	struct fake_conn *c = ud;

	atomic_fetch_add(&c->suspends, 1);
}

static void fake_resume(void *ud)
{
	struct fake_conn *c = ud;

	atomic_fetch_add(&c->resumes, 1);
}

static const struct events_sub_ops fake_ops = { .suspend = fake_suspend, .resume = fake_resume };

static int setup_hb(void **state, unsigned heartbeat_s)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/rbevXXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/registry.db", f->dir);
	if (registry_open(f->db, &f->reg) < 0)
		return -1;
	/* Two events from before the hub started: only a catch-up sees them. */
	registry_note(f->reg, mac1, "bios", "10.0.0.5", "dhcp.offer", "old %d", 1);
	registry_note(f->reg, mac1, NULL, NULL, "tftp.done", "old %d", 2);
	registry_flush(f->reg);
	if (events_new(f->reg, heartbeat_s, &f->ev) < 0)
		return -1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_hb(state, 60);
}

static int setup_fast_heartbeat(void **state)
{
	return setup_hb(state, 1);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[64];

	events_close_all(f->ev);
	events_free(f->ev);
	registry_free(f->reg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	free(f);
	return system(cmd);
}

/* Everything readable now, appended to out. */
static ssize_t drain(struct events_sub *s, char *out, size_t cap)
{
	size_t o = strlen(out);
	ssize_t n = 0;

	while (o + 1 < cap &&
	       (n = events_sub_read(s, out + o, RB_MIN((size_t)100, cap - o - 1))) > 0)
		o += (size_t)n;
	out[o] = '\0';
	return n;
}

/* Waits until c was resumed `want` times (the hub thread does it). */
static void wait_resumes(struct fake_conn *c, int want)
{
	for (int i = 0; i < 300 && atomic_load(&c->resumes) < want; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&c->resumes), want);
}

static void test_live(void **state)
{
	struct fixture *f = *state;
	struct fake_conn c = { 0 };
	struct events_sub *s = NULL;
	char out[8192] = "";

	assert_int_equal(events_subscribe(f->ev, -1, &fake_ops, &c, &s), 0);
	/* The hello, then nothing: suspended once, not resumed. */
	assert_int_equal(drain(s, out, sizeof(out)), 0);
	assert_non_null(strstr(out, ": rackboot events\nretry: 3000\n\n"));
	assert_int_equal(atomic_load(&c.suspends), 1);
	assert_int_equal(atomic_load(&c.resumes), 0);
	assert_null(strstr(out, "old")); /* live from now: no history */

	/* A progress report wakes it and is read as a "progress" event. */
	events_publish_progress(f->ev, mac1, "imaging", "write", "", 1 << 20, 4 << 20, 1000, 77);
	assert_int_equal(atomic_load(&c.resumes), 1);
	out[0] = '\0';
	assert_int_equal(drain(s, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "event: progress\ndata: {"));
	assert_null(strstr(out, "id: "));
	assert_non_null(strstr(out, "\"bytes_done\":1048576"));
	assert_non_null(strstr(out, "\"mac\":\"52:54:00:ee:00:01\""));
	assert_int_equal(atomic_load(&c.suspends), 2);

	/* A stored event: the registry's hook wakes the hub, which wakes us. */
	assert_int_equal(
	        registry_node_transition(f->reg, mac1, "imaging", "agent.imaging", "write"), 0);
	wait_resumes(&c, 2);
	out[0] = '\0';
	drain(s, out, sizeof(out));
	assert_non_null(strstr(out, "id: 3\nevent: node\ndata: {\"id\":3,"));
	assert_non_null(strstr(out, "\"event\":\"agent.imaging\""));
	assert_non_null(strstr(out, "\"state\":\"imaging\""));
	events_unsubscribe(s);
}

static void test_resume(void **state)
{
	struct fixture *f = *state;
	struct fake_conn c = { 0 };
	struct events_sub *s = NULL;
	char out[8192] = "";

	/* After event 1: event 2 (from the registry: before the hub), then live. */
	assert_int_equal(events_subscribe(f->ev, 1, &fake_ops, &c, &s), 0);
	drain(s, out, sizeof(out));
	assert_null(strstr(out, "id: 1\n"));
	assert_non_null(strstr(out, "id: 2\nevent: node\n"));
	assert_non_null(strstr(out, "tftp.done"));
	assert_int_equal(registry_node_transition(f->reg, mac1, "wiping", "agent.wiping", "x"), 0);
	wait_resumes(&c, 1);
	out[0] = '\0';
	drain(s, out, sizeof(out));
	assert_non_null(strstr(out, "id: 3\n"));
	assert_null(strstr(out, "id: 2\n")); /* not twice */
	events_unsubscribe(s);

	/* An id beyond the registry's resumes from now, not never. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(events_subscribe(f->ev, 999999, &fake_ops, &c, &s), 0);
	out[0] = '\0';
	drain(s, out, sizeof(out));
	assert_int_equal(registry_node_transition(f->reg, mac1, "imaging", "agent.imaging", "y"),
	                 0);
	wait_resumes(&c, 1);
	out[0] = '\0';
	drain(s, out, sizeof(out));
	assert_non_null(strstr(out, "id: 4\n"));
	events_unsubscribe(s);
}

static void test_slow_subscriber(void **state)
{
	struct fixture *f = *state;
	struct fake_conn c = { 0 };
	struct events_sub *s = NULL;
	struct events_stats st;
	char buf[4096];

	assert_int_equal(events_subscribe(f->ev, -1, &fake_ops, &c, &s), 0);
	assert_true(events_sub_read(s, buf, sizeof(buf)) > 0); /* the hello */
	/* It reads nothing while the ring is overrun. */
	for (int i = 0; i < EVENTS_RING + 1; i++)
		events_publish_progress(f->ev, mac1, "imaging", "write", "", (uint64_t)i, 1 << 30,
		                        0, i);
	assert_int_equal(events_sub_read(s, buf, sizeof(buf)), -EPIPE);
	events_get_stats(f->ev, &st);
	assert_int_equal(st.dropped_slow, 1);
	events_unsubscribe(s);
}

static void test_limit_and_close(void **state)
{
	struct fixture *f = *state;
	struct fake_conn c[EVENTS_MAX_SUBSCRIBERS + 1];
	struct events_sub *s[EVENTS_MAX_SUBSCRIBERS + 1];
	struct events_stats st;
	char buf[256];

	memset(c, 0, sizeof(c));
	for (int i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++) {
		assert_int_equal(events_subscribe(f->ev, -1, &fake_ops, &c[i], &s[i]), 0);
		while (events_sub_read(s[i], buf, sizeof(buf)) > 0)
			;
	}
	assert_int_equal(events_subscribe(f->ev, -1, &fake_ops, &c[64], &s[64]), -EBUSY);
	events_get_stats(f->ev, &st);
	assert_int_equal(st.subscribers, EVENTS_MAX_SUBSCRIBERS);
	assert_int_equal(st.refused_full, 1);
	/* One leaves: room for one more. */
	events_unsubscribe(s[0]);
	memset(&c[0], 0, sizeof(c[0]));
	assert_int_equal(events_subscribe(f->ev, -1, &fake_ops, &c[0], &s[0]), 0);
	while (events_sub_read(s[0], buf, sizeof(buf)) > 0)
		;
	/* Shutdown: every sleeper is resumed once and its next read is the end. */
	events_close_all(f->ev);
	for (int i = 0; i < EVENTS_MAX_SUBSCRIBERS; i++) {
		assert_int_equal(atomic_load(&c[i].resumes), atomic_load(&c[i].suspends));
		assert_int_equal(events_sub_read(s[i], buf, sizeof(buf)), -EPIPE);
		events_unsubscribe(s[i]);
	}
	assert_int_equal(events_subscribe(f->ev, -1, &fake_ops, &c[64], &s[64]), -ESHUTDOWN);
}

static void test_heartbeat(void **state)
{
	struct fixture *f = *state;
	struct fake_conn c = { 0 };
	struct events_sub *s = NULL;
	char out[512] = "";

	assert_int_equal(events_subscribe(f->ev, -1, &fake_ops, &c, &s), 0);
	drain(s, out, sizeof(out));
	assert_int_equal(atomic_load(&c.suspends), 1);
	/* Nothing happens; within about a second the hub wakes it for a ping. */
	wait_resumes(&c, 1);
	out[0] = '\0';
	drain(s, out, sizeof(out));
	assert_string_equal(out, ": ping\n\n");
	events_unsubscribe(s);
}

static void test_imaging_metrics(void **state)
{
	struct fixture *f = *state;
	struct events_stats st;
	struct rb_metrics m = { 0 };
	json_t *states = NULL;
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(registry_node_transition(f->reg, mac1, "imaging", "agent.imaging", ""), 0);
	assert_int_equal(registry_node_transition(f->reg, mac1, "imaged", "agent.imaged", ""), 0);
	for (int i = 0; i < 300; i++) {
		events_get_stats(f->ev, &st);
		if (st.imaging_count)
			break;
		usleep(10000);
	}
	assert_int_equal(st.imaging_count, 1);
	assert_true(st.imaging_sum_s < 30);
	for (int i = 0; i < EVENTS_IMAGING_BUCKETS; i++)
		assert_int_equal(st.imaging_buckets[i], 1); /* cumulative: every bucket */

	assert_int_equal(registry_state_counts(f->reg, &states, &m.nodes_held), 0);
	m.nodes_by_state = states;
	m.events = st;
	m.have_tftp = true;
	m.tftp.bytes_sent = 1234;
	m.http.requests = 7;
	assert_int_equal(metrics_format(&m, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "# TYPE rackboot_http_requests_total counter\n"
	                             "rackboot_http_requests_total 7\n"));
	assert_non_null(strstr(text, "rackboot_bytes_served_total{protocol=\"tftp\"} 1234\n"));
	assert_non_null(strstr(text, "rackboot_nodes{state=\"imaged\"} 1\n"));
	assert_non_null(strstr(text, "rackboot_imaging_duration_seconds_bucket{le=\"30\"} 1\n"));
	assert_non_null(strstr(text, "rackboot_imaging_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
	assert_non_null(strstr(text, "rackboot_imaging_duration_seconds_count 1\n"));
	assert_null(strstr(text, "rackboot_dhcp_")); /* DHCP off: no lines */
	free(text);
	json_decref(states);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_subscriber, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit_and_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat, setup_fast_heartbeat, teardown),
		cmocka_unit_test_setup_teardown(test_imaging_metrics, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
