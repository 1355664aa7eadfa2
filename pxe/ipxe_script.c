/* iPXE script templates: substitutes {{name}} placeholders from a small
 * key/value table into a bounded output buffer, and looks up the templates
 * built into the binary (rb_embedded_find over rb_embedded_files[]).
 *
 * It owns nothing but the string it returns. It never does I/O and never
 * logs: http.c decides what to say about a failed render.
 *
 * The escaping rule. Values come from the registry (hostname, profile, which
 * an operator or an agent report may set), from the config and from the
 * request's Host header, so they are treated as hostile. iPXE interprets,
 * inside a script line:
 *   - newline (a new command), and a line starting with '#' (comment) or ':'
 *     (label, a goto target);
 *   - "${...}" setting expansion (which could read or, through a nested
 *     expansion, redirect any setting);
 *   - "||" and "&&" command chaining;
 *   - quotes and backslashes in newer versions' argument splitting;
 *   - whitespace as the argument separator.
 * Rather than escape (iPXE has no escape that works across all versions and
 * commands) a value is REJECTED unless every byte is in a whitelist:
 *   [A-Za-z0-9], space, and - . _ ~ : / = , + @ % ?
 * That excludes '$', '|', '&', '#', ';', quotes, backslash, braces and every
 * control character (newline included) and non-ASCII byte. Space is allowed
 * because a kernel command line is several arguments; a value can therefore
 * add kernel arguments but never a command. A value placed at the start of a
 * line may not begin with ':' (it would turn the line into a label).
 * Rejecting instead of stripping means a bad value fails loudly (the caller
 * answers 500 and logs the variable) instead of booting something else. */
#include "pxe/ipxe_script.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "pxe/embedded.h"

struct outbuf {
	char *data;
	size_t len, cap, max; /* max: hard cap on len, excluding the NUL */
};

static int outbuf_put(struct outbuf *b, const char *s, size_t n)
{
	if (n > b->max - b->len)
		return -E2BIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > b->max + 1)
			cap = b->max + 1;
		p = realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool value_char_ok(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr(" -._~:/=,+@%?", c) != NULL;
}

/* Index of the first byte not allowed in a value, or -1 if all are fine. */
static long value_bad_index(const char *value)
{
	for (size_t i = 0; value[i]; i++)
		if (!value_char_ok((unsigned char)value[i]))
			return (long)i;
	return -1;
}

bool ipxe_value_is_safe(const char *value)
{
	return value && value_bad_index(value) < 0;
}

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static const struct ipxe_var *find_var(const struct ipxe_var *vars, size_t n_vars, const char *name,
                                       size_t len)
{
	for (size_t i = 0; i < n_vars; i++)
		if (vars[i].name && strlen(vars[i].name) == len &&
		    memcmp(vars[i].name, name, len) == 0)
			return &vars[i];
	return NULL;
}

/* Parses "{{ name }}" at tmpl[pos] (which starts with "{{"). On success
 * stores the name span and the offset just past "}}". */
static int parse_placeholder(const char *tmpl, size_t tmpl_len, size_t pos, size_t *ret_name,
                             size_t *ret_name_len, size_t *ret_end)
{
	size_t p = pos + 2, name, n;

	while (p < tmpl_len && tmpl[p] == ' ')
		p++;
	name = p;
	while (p < tmpl_len && name_char_ok(tmpl[p]))
		p++;
	n = p - name;
	if (n == 0 || n > IPXE_VAR_NAME_MAX)
		return -EINVAL;
	while (p < tmpl_len && tmpl[p] == ' ')
		p++;
	if (tmpl_len - p < 2 || tmpl[p] != '}' || tmpl[p + 1] != '}')
		return -EINVAL;
	*ret_name = name;
	*ret_name_len = n;
	*ret_end = p + 2;
	return 0;
}

/* True if only spaces/tabs lie between the last newline (or the start) and
 * tmpl[pos]: a value placed there starts an iPXE line. */
static bool at_line_start(const char *tmpl, size_t pos)
{
	while (pos > 0) {
		char c = tmpl[pos - 1];

		if (c == '\n')
			return true;
		if (c != ' ' && c != '\t')
			return false;
		pos--;
	}
	return true;
}

int ipxe_render(const char *tmpl, size_t tmpl_len, const struct ipxe_var *vars, size_t n_vars,
                size_t max_out, char **ret, size_t *ret_len, char *err, size_t errlen)
{
	struct outbuf b = { .max = RB_MIN(max_out, (size_t)IPXE_SCRIPT_MAX) };
	size_t pos = 0;
	int r;

	if (!tmpl || !ret)
		return -EINVAL;
	if (memchr(tmpl, '\0', tmpl_len)) {
		set_err(err, errlen, "template contains a NUL byte");
		return -EINVAL;
	}
	/* An empty result is still a valid, allocated string. */
	r = outbuf_put(&b, "", 0);
	if (r < 0)
		goto err_put;
	while (pos < tmpl_len) {
		const char *open = NULL;
		size_t name, name_len, end;
		const struct ipxe_var *v;
		long bad;

		for (size_t i = pos; i + 1 < tmpl_len; i++)
			if (tmpl[i] == '{' && tmpl[i + 1] == '{') {
				open = tmpl + i;
				break;
			}
		if (!open) {
			r = outbuf_put(&b, tmpl + pos, tmpl_len - pos);
			if (r < 0)
				goto err_put;
			break;
		}
		r = outbuf_put(&b, tmpl + pos, (size_t)(open - (tmpl + pos)));
		if (r < 0)
			goto err_put;
		pos = (size_t)(open - tmpl);
		r = parse_placeholder(tmpl, tmpl_len, pos, &name, &name_len, &end);
		if (r < 0) {
			set_err(err, errlen, "template: malformed placeholder at offset %zu", pos);
			goto err;
		}
		v = find_var(vars, n_vars, tmpl + name, name_len);
		if (!v || !v->value) {
			set_err(err, errlen, "template: unknown variable '%.*s'", (int)name_len,
			        tmpl + name);
			r = -ENOENT;
			goto err;
		}
		bad = value_bad_index(v->value);
		if (bad >= 0) {
			set_err(err, errlen,
			        "variable '%s': byte 0x%02x at %ld is not allowed in an iPXE "
			        "script",
			        v->name, (unsigned char)v->value[bad], bad);
			r = -EINVAL;
			goto err;
		}
		if (v->value[0] == ':' && at_line_start(tmpl, pos)) {
			set_err(err, errlen, "variable '%s': may not start a line with ':'",
			        v->name);
			r = -EINVAL;
			goto err;
		}
		r = outbuf_put(&b, v->value, strlen(v->value));
		if (r < 0)
			goto err_put;
		pos = end;
	}
	*ret = b.data;
	if (ret_len)
		*ret_len = b.len;
	return 0;

err_put:
	if (r == -E2BIG)
		set_err(err, errlen, "rendered script exceeds %zu bytes", b.max);
	else
		set_err(err, errlen, "out of memory");
err:
	free(b.data);
	return r;
}

const struct rb_embedded_file *rb_embedded_find(const char *name)
{
	if (!name)
		return NULL;
	for (const struct rb_embedded_file *f = rb_embedded_files; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}
