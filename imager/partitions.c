/* Partition-table summary (MBR and GPT) for the manifest, display only.
 *
 * The input is the first bytes of an image a user handed us: every field
 * is range-checked against the buffer and against the disk size, and the
 * entry count is capped at IMG_MAX_PARTS. Nothing here decides what is
 * written to a disk. Assumes 512-byte logical sectors (what image files
 * and the GPT tools default to). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "partitions.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void guid_text(const uint8_t *g, char out[40])
{
	snprintf(out, 40, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", le32(g),
	         (unsigned)(g[4] | g[5] << 8), (unsigned)(g[6] | g[7] << 8), g[8], g[9], g[10],
	         g[11], g[12], g[13], g[14], g[15]);
}

/* UTF-16LE name to printable ASCII ('?' for anything else). */
static void name_text(const uint8_t *p, size_t units, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < units && o + 1 < outlen; i++) {
		unsigned c = (unsigned)(p[2 * i] | p[2 * i + 1] << 8);
		if (c == 0)
			break;
		out[o++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
	}
	out[o] = '\0';
}

static int scan_gpt(const uint8_t *head, size_t len, uint64_t disk_size, struct img_manifest *m)
{
	const uint8_t *h = head + 512;
	uint64_t entries_lba = le64(h + 72);
	uint32_t n = le32(h + 80), esz = le32(h + 84);
	unsigned idx = 0;

	snprintf(m->table, sizeof(m->table), "gpt");
	if (esz < 128 || esz > 4096 || esz % 8 != 0 || entries_lba > len / 512)
		return 0;
	for (uint32_t i = 0; i < n && m->n_parts < IMG_MAX_PARTS; i++) {
		uint64_t off = entries_lba * 512 + (uint64_t)i * esz;
		const uint8_t *e;
		static const uint8_t zero[16];
		struct img_partition p;
		uint64_t first, last;
		int r;

		if (off + esz > len)
			break;
		e = head + off;
		idx = i + 1;
		if (memcmp(e, zero, 16) == 0)
			continue;
		first = le64(e + 32);
		last = le64(e + 40);
		if (last < first || last >= disk_size / 512)
			continue;
		memset(&p, 0, sizeof(p));
		p.index = idx;
		p.start = first * 512;
		p.size = (last - first + 1) * 512;
		guid_text(e, p.type);
		name_text(e + 56, 36, p.name, sizeof(p.name));
		r = img_manifest_add_partition(m, &p);
		if (r < 0)
			return r;
	}
	return 0;
}

int img_part_scan(const uint8_t *head, size_t len, uint64_t disk_size, struct img_manifest *m)
{
	bool protective = false;

	snprintf(m->table, sizeof(m->table), "none");
	if (len < 512 || head[510] != 0x55 || head[511] != 0xaa)
		return 0;
	for (int i = 0; i < 4; i++)
		if (head[446 + 16 * i + 4] == 0xee)
			protective = true;
	if (len >= 1024 && memcmp(head + 512, "EFI PART", 8) == 0)
		return scan_gpt(head, len, disk_size, m);
	if (protective)
		return 0;
	snprintf(m->table, sizeof(m->table), "mbr");
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = head + 446 + 16 * i;
		uint64_t start = le32(e + 8), sectors = le32(e + 12);
		struct img_partition p;
		int r;

		if (e[4] == 0 || sectors == 0 || (start + sectors) * 512 > disk_size)
			continue;
		memset(&p, 0, sizeof(p));
		p.index = (unsigned)i + 1;
		p.start = start * 512;
		p.size = sectors * 512;
		snprintf(p.type, sizeof(p.type), "0x%02x", e[4]);
		r = img_manifest_add_partition(m, &p);
		if (r < 0)
			return r;
	}
	return 0;
}
