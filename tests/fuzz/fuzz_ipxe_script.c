/* libFuzzer target for pxe/ipxe_script.c: fuzzed template and values.
 * Input: [cap byte] template '\0' value1 '\0' value2 ... (at most 5 values,
 * bound to the names a b c mac base). Checks that a successful render is
 * bounded, NUL-free and only ever used values the iPXE rule accepts. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pxe/ipxe_script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *names[] = { "a", "b", "c", "mac", "base" };
	struct ipxe_var vars[5];
	char *copy, *p, *end, *out = NULL, err[160];
	size_t n_vars = 0, tlen, max_out, len = 0;
	const char *tmpl;
	int r;

	if (size < 1 || size > 65536)
		return 0;
	/* Small caps exercise the E2BIG path, 0xff means "the hard cap". */
	max_out = data[0] == 0xff ? SIZE_MAX : (size_t)data[0] * 16;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	end = copy + size - 1;
	tmpl = copy;
	tlen = strlen(copy);
	for (p = copy + tlen + 1; p < end && n_vars < 5; p += strlen(p) + 1) {
		vars[n_vars].name = names[n_vars];
		vars[n_vars].value = p;
		n_vars++;
	}
	r = ipxe_render(tmpl, tlen, vars, n_vars, max_out, &out, &len, err, sizeof(err));
	if (r == 0) {
		assert(len <= max_out && len <= IPXE_SCRIPT_MAX);
		assert(strlen(out) == len);
		/* A placeholder is only ever replaced by a safe value. */
		for (size_t i = 0; i < n_vars; i++) {
			char ph[16];
			int n = snprintf(ph, sizeof(ph), "{{%s}}", vars[i].name);

			if (n > 0 && memmem(tmpl, tlen, ph, (size_t)n))
				assert(ipxe_value_is_safe(vars[i].value));
		}
		free(out);
	} else {
		assert(memchr(err, '\0', sizeof(err)));
	}
	free(copy);
	return 0;
}
