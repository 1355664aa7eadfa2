/* What the rackboot CLI shows of nodes: the node table, progress text, the
 * error line. Shared by the one-shot commands (main.c) and the live views
 * (follow.c); pure formatting to the FILE given, apart from cli_fail()
 * which writes to stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/util.h"

static const char *js(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

int cli_fail(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("rackboot: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

bool cli_state_busy(const char *state)
{
	static const char *const busy[] = { "provisioning", "wiping",   "imaging",
		                            "installing",   "updating", "reimage" };

	for (size_t i = 0; state && i < RB_ARRAY_SIZE(busy); i++)
		if (!strcmp(state, busy[i]))
			return true;
	return false;
}

char *cli_progress_text(json_t *p, unsigned width, char *buf, size_t len)
{
	uint64_t done = (uint64_t)json_integer_value(json_object_get(p, "bytes_done"));
	uint64_t total = (uint64_t)json_integer_value(json_object_get(p, "bytes_total"));
	uint64_t rate = (uint64_t)json_integer_value(json_object_get(p, "rate"));
	char bar[128], a[32], b[32], c[32];
	size_t o;

	buf[0] = '\0';
	if (!json_is_object(p))
		return buf;
	fmt_bar(done, total, width, bar, sizeof(bar));
	o = (size_t)snprintf(buf, len, "%s %s %s", bar, js(p, "state"), js(p, "step"));
	if (total && o < len)
		o += (size_t)snprintf(buf + o, len - o, " %s/%s", fmt_bytes(done, a, sizeof(a)),
		                      fmt_bytes(total, b, sizeof(b)));
	if (rate && o < len)
		snprintf(buf + o, len - o, " %s/s", fmt_bytes(rate, c, sizeof(c)));
	return buf;
}

void cli_print_nodes(FILE *out, json_t *nodes, int64_t now)
{
	static const char *const head[] = { "MAC",  "STATE", "PROFILE", "HOSTNAME", "RACK",
		                            "ARCH", "GPUS",  "SEEN",    "PROGRESS" };
	struct table t;
	size_t i;
	json_t *n;

	if (table_init(&t, head, RB_ARRAY_SIZE(head)) < 0)
		return;
	json_array_foreach(nodes, i, n)
	{
		json_t *hw = json_object_get(n, "hardware"), *gpus = json_object_get(hw, "gpus");
		char state[48], ngpu[16], seen[32], prog[160] = "";
		const char *cells[RB_ARRAY_SIZE(head)];

		snprintf(state, sizeof(state), "%s%s", js(n, "state"),
		         json_is_true(json_object_get(n, "held")) ? " (held)" : "");
		if (json_is_integer(gpus))
			snprintf(ngpu, sizeof(ngpu), "%lld", (long long)json_integer_value(gpus));
		else
			snprintf(ngpu, sizeof(ngpu), "-");
		fmt_ago(now, json_integer_value(json_object_get(n, "last_seen")), seen,
		        sizeof(seen));
		if (cli_state_busy(js(n, "state")))
			cli_progress_text(json_object_get(n, "progress"), 20, prog, sizeof(prog));
		cells[0] = js(n, "mac");
		cells[1] = state;
		cells[2] = *js(n, "profile") ? js(n, "profile") : "-";
		cells[3] = *js(n, "hostname") ? js(n, "hostname") : "-";
		cells[4] = *js(n, "rack") ? js(n, "rack") : "-";
		cells[5] = *js(n, "arch") ? js(n, "arch") : "-";
		cells[6] = ngpu;
		cells[7] = seen;
		cells[8] = prog;
		if (table_add(&t, cells) < 0)
			break;
	}
	table_print(&t, out);
	table_free(&t);
}
