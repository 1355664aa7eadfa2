/* A server-sent events parser (the WHATWG EventSource format, as rackbootd
 * writes it): bytes in, whole events out. Pure, no I/O: the CLI feeds it
 * what libcurl receives. Lines end in LF, CRLF or CR; "id", "event" and
 * "data" fields (several data lines join with LF); comment lines (":")
 * are counted, not delivered; an event is dispatched at a blank line. A
 * line holding a NUL byte is dropped. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSE_LINE_MAX  (256 * 1024) /* a longer line ends the stream (-E2BIG) */
#define SSE_FIELD_MAX 64

struct sse_event {
	const char *type; /* "message" when the event named none */
	const char *id;   /* NULL when the event had no id field */
	const char *data;
	size_t data_len;
};

/* Returns 0 to go on, anything else stops sse_feed() with that value. */
typedef int (*sse_event_fn)(const struct sse_event *ev, void *ud);

struct sse_parser {
	char *line; /* the line being assembled */
	size_t line_len, line_cap;
	char *data; /* data lines of the current event */
	size_t data_len, data_cap;
	bool has_data;
	char type[SSE_FIELD_MAX + 1];
	char id[SSE_FIELD_MAX + 1];
	bool has_id;
	bool last_cr; /* the previous byte was CR: an LF right after it is the same line end */
	uint64_t comments;
	sse_event_fn fn;
	void *ud;
};

void sse_init(struct sse_parser *p, sse_event_fn fn, void *ud);
void sse_free(struct sse_parser *p);
/* Feeds bytes. 0, the callback's non-zero value, -E2BIG for an over-long
 * line or -ENOMEM. */
int sse_feed(struct sse_parser *p, const char *buf, size_t len);
