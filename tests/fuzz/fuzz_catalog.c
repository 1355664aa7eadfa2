/* Fuzz target: repository catalogue parser, with the serialiser as an
 * oracle (accept -> serialise -> parse -> same bytes; every lookup of an
 * accepted entry finds it). */
#include "common/catalog.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct img_catalog *c = NULL, *back = NULL;
	char err[256] = "", *s1 = NULL, *s2 = NULL;
	size_t n1, n2;
	int r;

	if (size > 1024 * 1024)
		return 0;
	r = img_catalog_parse((const char *)data, size, &c, err, sizeof(err));
	if (r < 0) {
		if (r == -EINVAL && err[0] == '\0')
			abort();
		return 0;
	}
	for (size_t i = 0; i < c->n_images; i++)
		if (img_catalog_find_image(c, c->images[i].name, c->images[i].version) !=
		    &c->images[i])
			abort();
	if (img_catalog_serialize(c, &s1, &n1) != 0)
		abort();
	if (img_catalog_parse(s1, n1, &back, err, sizeof(err)) != 0)
		abort();
	if (img_catalog_serialize(back, &s2, &n2) != 0 || n1 != n2 || memcmp(s1, s2, n1) != 0)
		abort();
	free(s1);
	free(s2);
	img_catalog_free(c);
	img_catalog_free(back);
	return 0;
}
