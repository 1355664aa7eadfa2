/* iPXE script rendering: {{name}} placeholders filled from a key/value table,
 * with every value checked so that it cannot inject iPXE commands.
 * Pure: no I/O, no logging. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "pxe/embedded.h"

/* Hard cap on a rendered script and on a template read from disk. */
#define IPXE_SCRIPT_MAX (64 * 1024)
/* Longest variable name accepted inside {{ }}. */
#define IPXE_VAR_NAME_MAX 32

struct ipxe_var {
	const char *name;
	const char *value;
};

/* True if value may be pasted into an iPXE script: only [A-Za-z0-9], space
 * and "-._~:/=,+@%?" (see the rule in ipxe_script.c). */
bool ipxe_value_is_safe(const char *value);

/* Renders tmpl (tmpl_len bytes, no NUL inside) into a malloc'ed,
 * NUL-terminated string of at most max_out bytes (max_out is clamped to
 * IPXE_SCRIPT_MAX). Returns 0; -ENOENT for a placeholder that names no
 * variable, -EINVAL for a malformed template or an unsafe value, -E2BIG if
 * the output would exceed the cap, -ENOMEM. On failure, a one-line reason
 * naming the variable is written to err (if errlen > 0). */
int ipxe_render(const char *tmpl, size_t tmpl_len, const struct ipxe_var *vars, size_t n_vars,
                size_t max_out, char **ret, size_t *ret_len, char *err, size_t errlen);
