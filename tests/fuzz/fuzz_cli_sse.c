/* Fuzz target: the rackboot CLI's server-sent events parser (cli/sse.c),
 * which reads what a server (or anything at --server) sends. Oracle: the
 * events are the same whether the input comes in one piece or split in
 * two at a point the first byte picks, and every event's data length is
 * its string length. */
#include "cli/sse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct log {
	char *buf;
	size_t len;
	FILE *f;
};

static int on_event(const struct sse_event *ev, void *ud)
{
	struct log *l = ud;

	if (strlen(ev->data) != ev->data_len)
		abort();
	fprintf(l->f, "%s|%s|%zu|", ev->type, ev->id ? ev->id : "-", ev->data_len);
	fwrite(ev->data, 1, ev->data_len, l->f);
	fputc(0, l->f);
	return 0;
}

/* Parses data (split at cut) into a log of events; the parser's result. */
static int run(const char *data, size_t size, size_t cut, struct log *l)
{
	struct sse_parser p;
	int r;

	l->f = open_memstream(&l->buf, &l->len);
	if (!l->f)
		abort();
	sse_init(&p, on_event, l);
	r = sse_feed(&p, data, cut);
	if (r == 0)
		r = sse_feed(&p, data + cut, size - cut);
	sse_free(&p);
	fclose(l->f);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct log a = { 0 }, b = { 0 };
	size_t cut;
	int ra, rb;

	if (size < 1 || size > 1024 * 1024)
		return 0;
	cut = (size - 1) * data[0] / 255;
	ra = run((const char *)data + 1, size - 1, 0, &a);
	rb = run((const char *)data + 1, size - 1, cut, &b);
	if (ra != rb || a.len != b.len || memcmp(a.buf, b.buf, a.len) != 0)
		abort();
	free(a.buf);
	free(b.buf);
	return 0;
}
