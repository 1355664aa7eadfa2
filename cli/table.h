/* Human output of the rackboot CLI: aligned text tables and the small
 * formats in them (sizes, ages, progress bars). Pure functions: they
 * write to a FILE given by the caller and read no clock (now is passed). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TABLE_MAX_COLS 12
#define TABLE_CELL_MAX 48 /* a longer cell is cut, ending in "..." */

struct table {
	size_t n_cols;
	const char *head[TABLE_MAX_COLS];
	char **cells; /* n_rows * n_cols, owned */
	size_t n_rows, cap_rows;
};

/* A table with these column headings (at most TABLE_MAX_COLS). */
int table_init(struct table *t, const char *const *head, size_t n_cols);
void table_free(struct table *t);
/* Adds a row of n_cols cells (copied; NULL is an empty cell). */
int table_add(struct table *t, const char *const *cells);
/* Writes the table: headings, then rows, columns separated by two spaces,
 * each as wide as its widest cell (cut at TABLE_CELL_MAX), no trailing
 * spaces; the last cell of a row is never cut. An empty table prints its
 * headings only. */
void table_print(const struct table *t, FILE *out);

/* "512 B", "1.5 KiB", "3.9 GiB" (binary units, one decimal from KiB on). */
char *fmt_bytes(uint64_t n, char *buf, size_t len);
/* Seconds between then and now as "just now", "42s ago", "5m ago",
 * "3h ago", "12d ago"; "never" when then is 0. */
char *fmt_ago(int64_t now, int64_t then, char *buf, size_t len);
/* A bar of width cells for done of total: "[#####-----]  50%"; total 0
 * gives an empty bar and "  ?%". */
char *fmt_bar(uint64_t done, uint64_t total, unsigned width, char *buf, size_t len);
/* Seconds as "45s", "12m05s", "2h03m". */
char *fmt_duration(uint64_t s, char *buf, size_t len);
