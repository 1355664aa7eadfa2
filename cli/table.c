/* Text tables and formats for the CLI. Owns the cells of a table. Never
 * reads a clock or the terminal: the caller decides the time and where
 * the output goes, so every format is testable with fixed values. Cells
 * are printed as given; callers pass server strings that rackbootd
 * limited to printable ASCII. */
#include "cli/table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int table_init(struct table *t, const char *const *head, size_t n_cols)
{
	memset(t, 0, sizeof(*t));
	if (n_cols == 0 || n_cols > TABLE_MAX_COLS)
		return -EINVAL;
	t->n_cols = n_cols;
	for (size_t i = 0; i < n_cols; i++)
		t->head[i] = head[i];
	return 0;
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n_rows = t->cap_rows = 0;
}

int table_add(struct table *t, const char *const *cells)
{
	if (t->n_rows == t->cap_rows) {
		size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
		char **c = realloc(t->cells, cap * t->n_cols * sizeof(*c));

		if (!c)
			return -ENOMEM;
		t->cells = c;
		t->cap_rows = cap;
	}
	for (size_t i = 0; i < t->n_cols; i++) {
		char *s = strdup(cells[i] ? cells[i] : "");

		if (!s) {
			for (size_t j = 0; j < i; j++)
				free(t->cells[t->n_rows * t->n_cols + j]);
			return -ENOMEM;
		}
		t->cells[t->n_rows * t->n_cols + i] = s;
	}
	t->n_rows++;
	return 0;
}

static size_t cell_width(const char *s)
{
	size_t n = strlen(s);

	return n > TABLE_CELL_MAX ? TABLE_CELL_MAX : n;
}

/* The last column is never cut: nothing to align after it. */
static void print_cell(FILE *out, const char *s, size_t width, bool last)
{
	size_t n = strlen(s);

	if (n > TABLE_CELL_MAX && !last) {
		fprintf(out, "%.*s...", TABLE_CELL_MAX - 3, s);
		n = TABLE_CELL_MAX;
	} else {
		fputs(s, out);
	}
	if (!last)
		fprintf(out, "%*s", (int)(width - n + 2), "");
}

void table_print(const struct table *t, FILE *out)
{
	size_t w[TABLE_MAX_COLS], last = 0;

	for (size_t c = 0; c < t->n_cols; c++) {
		w[c] = cell_width(t->head[c]);
		for (size_t r = 0; r < t->n_rows; r++) {
			size_t n = cell_width(t->cells[r * t->n_cols + c]);

			if (n > w[c])
				w[c] = n;
		}
	}
	/* Trailing empty columns of a row are not padded. */
	for (size_t r = 0; r <= t->n_rows; r++) {
		const char *const *row =
		        r == 0 ? t->head : (const char *const *)&t->cells[(r - 1) * t->n_cols];

		last = 0;
		for (size_t c = 0; c < t->n_cols; c++)
			if (*row[c])
				last = c;
		for (size_t c = 0; c <= last; c++)
			print_cell(out, row[c], w[c], c == last);
		fputc('\n', out);
	}
}

char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)n;
	size_t u = 0;

	if (n < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)n);
		return buf;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

char *fmt_ago(int64_t now, int64_t then, char *buf, size_t len)
{
	int64_t d = now - then;

	if (then <= 0)
		snprintf(buf, len, "never");
	else if (d < 2)
		snprintf(buf, len, "just now");
	else if (d < 60)
		snprintf(buf, len, "%llds ago", (long long)d);
	else if (d < 3600)
		snprintf(buf, len, "%lldm ago", (long long)(d / 60));
	else if (d < 86400)
		snprintf(buf, len, "%lldh ago", (long long)(d / 3600));
	else
		snprintf(buf, len, "%lldd ago", (long long)(d / 86400));
	return buf;
}

char *fmt_bar(uint64_t done, uint64_t total, unsigned width, char *buf, size_t len)
{
	unsigned fill = 0, pct = 0;
	size_t o = 0;

	if (len < (size_t)width + 8) {
		if (len)
			buf[0] = '\0';
		return buf;
	}
	if (total > 0) {
		if (done > total)
			done = total;
		/* In long double: bytes of a large disk times 100 overflow. */
		pct = (unsigned)((long double)done * 100 / (long double)total);
		fill = (unsigned)((long double)done * width / (long double)total);
	}
	buf[o++] = '[';
	for (unsigned i = 0; i < width; i++)
		buf[o++] = i < fill ? '#' : '-';
	buf[o++] = ']';
	if (total > 0)
		snprintf(buf + o, len - o, " %3u%%", pct);
	else
		snprintf(buf + o, len - o, "   ?%%");
	return buf;
}

char *fmt_duration(uint64_t s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%llus", (unsigned long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
		         (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
		         (unsigned long long)(s % 3600 / 60));
	return buf;
}
