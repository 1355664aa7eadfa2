/* Node list filters: query string decoding and matching. The query comes
 * from the network: every key and value is bounded, escapes are checked,
 * %00 is refused, and an unknown key is an error rather than ignored (a
 * typo must not turn "the nodes of rack 12" into "all nodes" in a
 * script). Owns nothing, does no I/O. */
#include "pxe/nodefilter.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes s[0..n) into out (cap bytes with the NUL). */
static int decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (n - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				return -EINVAL;
			c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
			if (c == 0)
				return -EINVAL;
			i += 2;
		}
		if (o + 1 >= cap)
			return -ENAMETOOLONG;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

int query_next(const char **cursor, char *key, size_t keylen, char *value, size_t valuelen,
               char *err, size_t errlen)
{
	const char *p = *cursor, *amp, *eq;
	size_t len;
	int r;

	while (p && *p == '&')
		p++;
	if (!p || !*p) {
		*cursor = p;
		return 0;
	}
	amp = strchr(p, '&');
	len = amp ? (size_t)(amp - p) : strlen(p);
	eq = memchr(p, '=', len);
	r = decode(p, eq ? (size_t)(eq - p) : len, key, keylen);
	if (r == 0 && eq)
		r = decode(eq + 1, len - (size_t)(eq - p) - 1, value, valuelen);
	else if (r == 0)
		value[0] = '\0';
	if (r == -ENAMETOOLONG)
		return rb_errf(err, errlen, "query: a key or value is too long");
	if (r < 0)
		return rb_errf(err, errlen, "query: bad %%-escape (or %%00)");
	*cursor = amp ? amp + 1 : p + len;
	return 1;
}

/* Splits a comma list into dst (n_dst entries of width w). */
static int split_list(const char *key, const char *v, char *dst, size_t w, size_t *n_dst, char *err,
                      size_t errlen)
{
	const char *p = v;

	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (*n_dst == NODE_FILTER_MAX_VALUES)
			return rb_errf(err, errlen, "query: more than %d values for \"%s\"",
			               NODE_FILTER_MAX_VALUES, key);
		if (len >= w)
			return rb_errf(err, errlen,
			               "query: a \"%s\" value is longer than %zu bytes", key,
			               w - 1);
		memcpy(dst + *n_dst * w, p, len);
		dst[*n_dst * w + len] = '\0';
		(*n_dst)++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int node_filter_parse(const char *query, struct node_filter *f, char *err, size_t errlen)
{
	const char *cur = query;
	char key[32], value[512];
	int r;

	memset(f, 0, sizeof(*f));
	f->held = -1;
	if (query && strlen(query) > NODE_FILTER_QUERY_MAX)
		return rb_errf(err, errlen, "query: longer than %d bytes", NODE_FILTER_QUERY_MAX);
	while ((r = query_next(&cur, key, sizeof(key), value, sizeof(value), err, errlen)) > 0) {
		if (!strcmp(key, "state")) {
			r = split_list(key, value, &f->states[0][0], sizeof(f->states[0]),
			               &f->n_states, err, errlen);
		} else if (!strcmp(key, "profile")) {
			r = split_list(key, value, &f->profiles[0][0], sizeof(f->profiles[0]),
			               &f->n_profiles, err, errlen);
		} else if (!strcmp(key, "rack")) {
			r = split_list(key, value, &f->racks[0][0], sizeof(f->racks[0]),
			               &f->n_racks, err, errlen);
		} else if (!strcmp(key, "held")) {
			if (!strcmp(value, "true") || !strcmp(value, "1"))
				f->held = 1;
			else if (!strcmp(value, "false") || !strcmp(value, "0"))
				f->held = 0;
			else
				r = rb_errf(err, errlen, "query: held must be true or false");
		} else if (!strcmp(key, "label")) {
			char *eq = strchr(value, '=');
			size_t klen = eq ? (size_t)(eq - value) : strlen(value);
			size_t i = f->n_labels;

			if (i == NODE_FILTER_MAX_VALUES)
				return rb_errf(err, errlen, "query: more than %d label filters",
				               NODE_FILTER_MAX_VALUES);
			if (klen == 0 || klen >= sizeof(f->labels[i].key) ||
			    (eq && strlen(eq + 1) >= sizeof(f->labels[i].value)))
				return rb_errf(err, errlen,
				               "query: label must be KEY=VALUE or KEY (KEY 1 to 63 "
				               "bytes, VALUE at most 255)");
			memcpy(f->labels[i].key, value, klen);
			f->labels[i].key[klen] = '\0';
			f->labels[i].any_value = !eq;
			snprintf(f->labels[i].value, sizeof(f->labels[i].value), "%s",
			         eq ? eq + 1 : "");
			f->n_labels++;
		} else {
			r = rb_errf(
			        err, errlen,
			        "query: unknown filter \"%s\" (use state, profile, rack, label or "
			        "held)",
			        key);
		}
		if (r < 0)
			return r;
	}
	return r;
}

static const char *member(const json_t *node, const char *key)
{
	const char *s = json_string_value(json_object_get(node, key));

	return s ? s : "";
}

static bool any_of(const char *s, const char *list, size_t w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, list + i * w))
			return true;
	return false;
}

bool node_filter_match(const struct node_filter *f, const json_t *node)
{
	const json_t *labels = json_object_get(node, "labels");

	if (f->n_states &&
	    !any_of(member(node, "state"), &f->states[0][0], sizeof(f->states[0]), f->n_states))
		return false;
	if (f->n_profiles && !any_of(member(node, "profile"), &f->profiles[0][0],
	                             sizeof(f->profiles[0]), f->n_profiles))
		return false;
	if (f->n_racks &&
	    !any_of(member(node, "rack"), &f->racks[0][0], sizeof(f->racks[0]), f->n_racks))
		return false;
	if (f->held >= 0 && json_is_true(json_object_get(node, "held")) != (f->held == 1))
		return false;
	for (size_t i = 0; i < f->n_labels; i++) {
		const json_t *v = json_object_get(labels, f->labels[i].key);

		if (!v)
			return false;
		if (!f->labels[i].any_value &&
		    (!json_is_string(v) || strcmp(json_string_value(v), f->labels[i].value) != 0))
			return false;
	}
	return true;
}
