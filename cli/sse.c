/* Server-sent events parser. Owns the line and data buffers (bounded by
 * SSE_LINE_MAX). Never touches a socket; the callback gets pointers into
 * its buffers that stay valid until it returns. */
#include "cli/sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sse_init(struct sse_parser *p, sse_event_fn fn, void *ud)
{
	memset(p, 0, sizeof(*p));
	p->fn = fn;
	p->ud = ud;
}

void sse_free(struct sse_parser *p)
{
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
	p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 256;
	char *b;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	b = realloc(*buf, n);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*cap = n;
	return 0;
}

static int dispatch(struct sse_parser *p)
{
	struct sse_event ev;
	int r = 0;

	if (p->has_data) {
		/* The final LF of the data is not part of it. */
		if (p->data_len > 0 && p->data[p->data_len - 1] == '\n')
			p->data_len--;
		p->data[p->data_len] = '\0';
		ev.type = *p->type ? p->type : "message";
		ev.id = p->has_id ? p->id : NULL;
		ev.data = p->data;
		ev.data_len = p->data_len;
		r = p->fn(&ev, p->ud);
	}
	p->data_len = 0;
	p->has_data = false;
	p->type[0] = '\0';
	p->has_id = false;
	return r;
}

static void copy_field(char *dst, const char *v, size_t n)
{
	if (n > SSE_FIELD_MAX)
		n = SSE_FIELD_MAX;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int line_done(struct sse_parser *p)
{
	char *l = p->line, *colon, *v;
	size_t n = p->line_len, flen, vlen;

	if (n == 0)
		return dispatch(p);
	/* A NUL has no place in what rackbootd sends (JSON, numbers): the
	 * line is dropped, so data is always a C string. */
	if (memchr(l, '\0', n))
		return 0;
	if (l[0] == ':') {
		p->comments++;
		return 0;
	}
	colon = memchr(l, ':', n);
	flen = colon ? (size_t)(colon - l) : n;
	v = colon ? colon + 1 : l + n;
	vlen = colon ? n - flen - 1 : 0;
	if (vlen > 0 && *v == ' ') {
		v++;
		vlen--;
	}
	if (flen == 4 && !memcmp(l, "data", 4)) {
		if (grow(&p->data, &p->data_cap, p->data_len + vlen + 2) < 0)
			return -ENOMEM;
		memcpy(p->data + p->data_len, v, vlen);
		p->data_len += vlen;
		p->data[p->data_len++] = '\n';
		p->has_data = true;
	} else if (flen == 5 && !memcmp(l, "event", 5)) {
		copy_field(p->type, v, vlen);
	} else if (flen == 2 && !memcmp(l, "id", 2)) {
		copy_field(p->id, v, vlen);
		p->has_id = true;
	}
	/* "retry" and unknown fields are ignored, as the format says. */
	return 0;
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		int r;

		if (c == '\n' && p->last_cr) {
			p->last_cr = false;
			continue;
		}
		p->last_cr = c == '\r';
		if (c == '\n' || c == '\r') {
			r = line_done(p);
			p->line_len = 0;
			if (r != 0)
				return r;
			continue;
		}
		if (p->line_len + 1 >= SSE_LINE_MAX)
			return -E2BIG;
		if (grow(&p->line, &p->line_cap, p->line_len + 2) < 0)
			return -ENOMEM;
		p->line[p->line_len++] = c;
	}
	return 0;
}
