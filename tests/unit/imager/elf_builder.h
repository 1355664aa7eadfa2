/* Test helpers: little-endian stores and a minimal relocatable ELF
 * object (a kernel module stand-in) with a .modinfo section. Tests only. */
#pragma once
#include <stdint.h>
#include <string.h>

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* A relocatable object with .shstrtab and .modinfo sections. */
static inline size_t make_ko(uint8_t *b, size_t cap, const char *modinfo, size_t mlen)
{
	static const char shstr[] = "\0.shstrtab\0.modinfo\0";
	size_t off_shstr = 64, off_mi = off_shstr + sizeof(shstr),
	       off_sh = (off_mi + mlen + 7) & ~(size_t)7;
	size_t total = off_sh + 3 * 64;
	uint8_t *sh;

	if (total > cap)
		return 0;
	memset(b, 0, total);
	memcpy(b, "\177ELF", 4);
	b[4] = 2;
	b[5] = 1;
	put16(b + 16, 1); /* ET_REL */
	put64(b + 40, off_sh);
	put16(b + 58, 64);
	put16(b + 60, 3);
	put16(b + 62, 1);
	memcpy(b + off_shstr, shstr, sizeof(shstr));
	memcpy(b + off_mi, modinfo, mlen);
	sh = b + off_sh + 64;
	put32(sh, 1);
	put32(sh + 4, 3);
	put64(sh + 24, off_shstr);
	put64(sh + 32, sizeof(shstr));
	sh += 64;
	put32(sh, 11);
	put32(sh + 4, 1);
	put64(sh + 24, off_mi);
	put64(sh + 32, mlen);
	return total;
}
