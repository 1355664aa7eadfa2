/* Fuzz target: image manifest parser, with the serialiser as an oracle:
 * a manifest we accept must validate, serialise, parse back and serialise
 * to the same bytes. Errors must always leave a message. */
#include "common/manifest.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct img_manifest *m = NULL, *back = NULL;
	char err[256] = "", *s1 = NULL, *s2 = NULL;
	size_t n1, n2;
	int r;

	if (size > 1024 * 1024)
		return 0;
	r = img_manifest_parse((const char *)data, size, &m, err, sizeof(err));
	if (r < 0) {
		if (r == -EINVAL && err[0] == '\0')
			abort(); /* every refusal says why */
		return 0;
	}
	if (img_manifest_validate(m, err, sizeof(err)) != 0)
		abort();
	(void)img_manifest_stored_bytes(m);
	if (img_manifest_serialize(m, &s1, &n1) != 0)
		abort();
	if (img_manifest_parse(s1, n1, &back, err, sizeof(err)) != 0)
		abort();
	if (img_manifest_serialize(back, &s2, &n2) != 0 || n1 != n2 || memcmp(s1, s2, n1) != 0)
		abort();
	free(s1);
	free(s2);
	img_manifest_free(m);
	img_manifest_free(back);
	return 0;
}
