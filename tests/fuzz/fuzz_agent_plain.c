/* Fuzz target: the small parsers of plain images and rootfs tarballs. The
 * first byte picks one: 'r' a Content-Range value (from the server), 'g'
 * GPT entries read back from a disk (LBA size 512, or 4096 when the second
 * byte is odd), 'h' the head of a raw image's data (agent_plain_check_head:
 * format magics and VMDK descriptors), anything else a catalogue path
 * joined to a repository URL.
 * Oracles: an accepted range is ordered and formats back to itself; a GPT
 * entry found is ordered; a head is accepted or refused with a reason, and
 * one starting with a container magic is refused; a joined URL holds only
 * unreserved characters and percent escapes, and decodes back to the
 * path. */
#include "agent/plain.h"
#include "agent/rootfs.h"
#include "agent/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_range(const char *s)
{
	uint64_t a, b, t, a2, b2, t2;
	char again[128];

	if (agent_content_range_parse(s, &a, &b, &t) < 0)
		return;
	if (b < a || (t != UINT64_MAX && b >= t))
		abort();
	if (t == UINT64_MAX)
		snprintf(again, sizeof(again), "bytes %" PRIu64 "-%" PRIu64 "/*", a, b);
	else
		snprintf(again, sizeof(again), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, a, b, t);
	if (agent_content_range_parse(again, &a2, &b2, &t2) < 0 || a2 != a || b2 != b || t2 != t)
		abort();
}

static void fuzz_gpt(const uint8_t *d, size_t n)
{
	unsigned lbs = n > 0 && (d[0] & 1) ? 4096 : 512;
	uint64_t first, last;

	if (n == 0)
		return;
	for (unsigned i = 0; i < 4; i++)
		if (agent_gpt_entry(d + 1, n - 1, lbs, i, &first, &last) == 0 &&
		    (first == 0 || last < first))
			abort();
}

static void fuzz_head(const uint8_t *d, size_t n)
{
	static const char *const magics[] = { "QFI\xfb", "KDMV", "COWD", "vhdxfile", "conectix" };
	uint8_t *exact = malloc(n ? n : 1); /* exact size: an overread is caught */
	char err[512] = "";
	int r;

	if (!exact)
		return;
	memcpy(exact, d, n);
	r = agent_plain_check_head(exact, n, "http://h/repo/plain/x", "raw", err, sizeof(err));
	if ((r != 0 && r != -EINVAL) || (r < 0 && !strstr(err, "nothing was written")))
		abort();
	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++)
		if (n >= strlen(magics[i]) && memcmp(d, magics[i], strlen(magics[i])) == 0 &&
		    r == 0)
			abort();
	free(exact);
}

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void fuzz_url(const char *path)
{
	static const char base[] = "http://h/repo";
	char url[512], back[512];
	size_t k = 0;

	if (agent_url_join(base, path, url, sizeof(url)) < 0)
		return;
	if (strncmp(url, "http://h/repo/", 14) != 0)
		abort();
	for (const char *p = url + 14; *p; p++) {
		if (*p == '%') {
			int hi = unhex(p[1]), lo = hi < 0 ? -1 : unhex(p[2]);

			if (hi < 0 || lo < 0)
				abort();
			back[k++] = (char)(hi << 4 | lo);
			p += 2;
		} else if (strchr("._~+/-", *p) || (*p >= 'a' && *p <= 'z') ||
		           (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) {
			back[k++] = *p;
		} else {
			abort();
		}
	}
	back[k] = '\0';
	if (strcmp(back, path) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size == 0 || size > 65536)
		return 0;
	if (data[0] == 'g') {
		fuzz_gpt(data + 1, size - 1);
		return 0;
	}
	if (data[0] == 'h') {
		fuzz_head(data + 1, size - 1);
		return 0;
	}
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (data[0] == 'r')
		fuzz_range(s);
	else if (strlen(s) < 150)
		fuzz_url(s);
	free(s);
	return 0;
}
