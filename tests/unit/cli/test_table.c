/* The CLI's human output (cli/table.c, cli/view.c): table layout (widths,
 * cut cells, trailing empty cells), sizes, ages, durations and progress
 * bars as vectors, the node table from a node list document, and the
 * server-sent events parser (cli/sse.c) fed whole and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cli/cli.h"
#include "cli/sse.h"
#include "cli/table.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Runs fn(out) into a string (caller frees). */
static char *capture(void (*fn)(FILE *, void *), void *ud)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f, ud);
	fclose(f);
	return buf;
}

static void print_table(FILE *f, void *ud)
{
	table_print(ud, f);
}

static void test_table_layout(void **state)
{
	static const char *const head[] = { "MAC", "STATE", "NOTE" };
	const char *r1[] = { "52:54:00:00:00:01", "ready", "" };
	const char *r2[] = { "x", "provisioning", "a" };
	char long_cell[100];
	const char *r3[] = { long_cell, "x", NULL };
	struct table t;
	char *out;

	memset(long_cell, 'L', sizeof(long_cell) - 1);
	long_cell[sizeof(long_cell) - 1] = '\0';
	assert_int_equal(table_init(&t, head, 3), 0);
	out = capture(print_table, &t);
	assert_string_equal(out, "MAC  STATE  NOTE\n"); /* headings only */
	free(out);
	assert_int_equal(table_add(&t, r1), 0);
	assert_int_equal(table_add(&t, r2), 0);
	out = capture(print_table, &t);
	assert_string_equal(out, "MAC                STATE         NOTE\n"
	                         "52:54:00:00:00:01  ready\n" /* no trailing spaces */
	                         "x                  provisioning  a\n");
	free(out);
	assert_int_equal(table_add(&t, r3), 0);
	out = capture(print_table, &t);
	/* Cut at TABLE_CELL_MAX, ending in "...", and the column no wider;
	 * the last cell of a row is never cut. */
	assert_non_null(strstr(out, "LLL...  x\n"));
	assert_non_null(strstr(out, "MAC                                               STATE"));
	free(out);
	table_free(&t);
	assert_int_equal(table_init(&t, head, 0), -EINVAL);
	assert_int_equal(table_init(&t, head, TABLE_MAX_COLS + 1), -EINVAL);
}

static void test_formats(void **state)
{
	static const struct {
		uint64_t n;
		const char *want;
	} bytes[] = {
		{ 0, "0 B" },
		{ 1023, "1023 B" },
		{ 1024, "1.0 KiB" },
		{ 1536, "1.5 KiB" },
		{ 1048576, "1.0 MiB" },
		{ 4294967296ULL, "4.0 GiB" },
		{ UINT64_MAX, "16.0 EiB" },
	};
	static const struct {
		int64_t now, then;
		const char *want;
	} ago[] = {
		{ 1000, 0, "never" },        { 1000, 1000, "just now" },
		{ 1000, 958, "42s ago" },    { 1000, 700, "5m ago" },
		{ 100000, 89200, "3h ago" }, { 2000000, 900000, "12d ago" },
		{ 1000, 2000, "just now" }, /* a clock step back */
	};
	static const struct {
		uint64_t done, total;
		unsigned width;
		const char *want;
	} bars[] = {
		{ 0, 100, 10, "[----------]   0%" },
		{ 50, 100, 10, "[#####-----]  50%" },
		{ 100, 100, 10, "[##########] 100%" },
		{ 200, 100, 4, "[####] 100%" }, /* more than the total: full */
		{ 5, 0, 4, "[----]   ?%" },
		{ 8000000000000ULL, 16000000000000ULL, 2, "[#-]  50%" }, /* no overflow */
	};
	static const struct {
		uint64_t s;
		const char *want;
	} dur[] = { { 0, "0s" }, { 59, "59s" }, { 725, "12m05s" }, { 7380, "2h03m" } };
	char buf[64];

	for (size_t i = 0; i < N(bytes); i++)
		assert_string_equal(fmt_bytes(bytes[i].n, buf, sizeof(buf)), bytes[i].want);
	for (size_t i = 0; i < N(ago); i++)
		assert_string_equal(fmt_ago(ago[i].now, ago[i].then, buf, sizeof(buf)),
		                    ago[i].want);
	for (size_t i = 0; i < N(bars); i++)
		assert_string_equal(
		        fmt_bar(bars[i].done, bars[i].total, bars[i].width, buf, sizeof(buf)),
		        bars[i].want);
	for (size_t i = 0; i < N(dur); i++)
		assert_string_equal(fmt_duration(dur[i].s, buf, sizeof(buf)), dur[i].want);
	/* A buffer too small for the bar: empty, not overflowed. */
	assert_string_equal(fmt_bar(1, 2, 10, buf, 12), "");
}

static void print_nodes(FILE *f, void *ud)
{
	cli_print_nodes(f, ud, 10000);
}

static void test_node_table(void **state)
{
	json_t *doc = json_loads(
	        "{\"nodes\":["
	        "{\"mac\":\"52:54:00:00:00:01\",\"state\":\"imaging\",\"held\":false,"
	        "\"profile\":\"gpu\",\"hostname\":\"gpu-01\",\"rack\":\"r12\",\"arch\":\"uefi-"
	        "x64\","
	        "\"last_seen\":9990,\"hardware\":{\"gpus\":8},\"progress\":{\"state\":\"imaging\","
	        "\"step\":\"write\",\"bytes_done\":1073741824,\"bytes_total\":4294967296,"
	        "\"rate\":0}},"
	        "{\"mac\":\"52:54:00:00:00:02\",\"state\":\"ready\",\"held\":true,\"profile\":\"\","
	        "\"hostname\":\"\",\"rack\":\"\",\"arch\":\"\",\"last_seen\":0,\"hardware\":null,"
	        "\"progress\":{\"state\":\"imaged\",\"bytes_done\":5,\"bytes_total\":5}}]}",
	        0, NULL);
	char *out;

	assert_non_null(doc);
	out = capture(print_nodes, json_object_get(doc, "nodes"));
	assert_string_equal(out, "MAC                STATE         PROFILE  HOSTNAME  RACK  ARCH   "
	                         "   GPUS  SEEN     "
	                         "PROGRESS\n"
	                         "52:54:00:00:00:01  imaging       gpu      gpu-01    r12   "
	                         "uefi-x64  8     10s ago  "
	                         "[#####---------------]  25% imaging write 1.0 GiB/4.0 GiB\n"
	                         "52:54:00:00:00:02  ready (held)  -        -         -     -      "
	                         "   -     never\n");
	free(out);
	json_decref(doc);
}

struct got {
	char log[2048];
	int stop_after; /* stop (return 7) at this event, 0 = never */
	int n;
};

static int on_ev(const struct sse_event *ev, void *ud)
{
	struct got *g = ud;
	size_t o = strlen(g->log);

	snprintf(g->log + o, sizeof(g->log) - o, "[%s|%s|%s]", ev->type, ev->id ? ev->id : "-",
	         ev->data);
	assert_int_equal(strlen(ev->data), ev->data_len);
	return ++g->n == g->stop_after ? 7 : 0;
}

static const char stream[] = ": rackboot events\nretry: 3000\n\n"
                             "id: 4\nevent: node\ndata: {\"a\":1}\n\n"
                             "event: progress\r\ndata: x\r\ndata: y\r\n\r\n"
                             "data:no-space\rid:9\r\r"
                             ": ping\n\n"
                             "id: 5\n\n" /* no data: nothing dispatched */
                             "data\n\n"; /* a field without a colon: empty data */
static const char want[] = "[node|4|{\"a\":1}][progress|-|x\ny][message|9|no-space][message|-|]";

static void test_sse_whole_and_split(void **state)
{
	struct sse_parser p;
	struct got g = { .log = "" };

	sse_init(&p, on_ev, &g);
	assert_int_equal(sse_feed(&p, stream, strlen(stream)), 0);
	assert_string_equal(g.log, want);
	assert_int_equal(p.comments, 2);
	sse_free(&p);

	/* Byte by byte: the same events (CRLF split across calls too). */
	memset(&g, 0, sizeof(g));
	sse_init(&p, on_ev, &g);
	for (size_t i = 0; i < strlen(stream); i++)
		assert_int_equal(sse_feed(&p, stream + i, 1), 0);
	assert_string_equal(g.log, want);
	sse_free(&p);
}

static void test_sse_stop_and_limits(void **state)
{
	struct sse_parser p;
	struct got g = { .log = "", .stop_after = 1 };
	char *big;

	sse_init(&p, on_ev, &g);
	assert_int_equal(sse_feed(&p, stream, strlen(stream)), 7);
	assert_string_equal(g.log, "[node|4|{\"a\":1}]");
	sse_free(&p);

	big = malloc(SSE_LINE_MAX + 10);
	assert_non_null(big);
	memset(big, 'x', SSE_LINE_MAX + 10);
	memset(&g, 0, sizeof(g));
	sse_init(&p, on_ev, &g);
	assert_int_equal(sse_feed(&p, big, SSE_LINE_MAX + 10), -E2BIG);
	sse_free(&p);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_layout),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_node_table),
		cmocka_unit_test(test_sse_whole_and_split),
		cmocka_unit_test(test_sse_stop_and_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
