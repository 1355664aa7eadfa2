/* Bounded ELF readers (see elf.h).
 *
 * The initramfs builder must find what a binary needs WITHOUT running it
 * (ldd runs the program's interpreter, which is not safe on an untrusted
 * or foreign binary), so this reads the program headers: PT_INTERP, then
 * PT_DYNAMIC, whose DT_STRTAB is a virtual address translated to a file
 * offset through the PT_LOAD segment that holds it. Kernel modules are
 * relocatable objects without segments: their .modinfo is found through
 * the section headers.
 *
 * Owns: nothing beyond the strings it returns in img_elf_info.
 * Never: reads outside [buf, buf+len), trusts a count or offset before
 * checking it (with overflow-safe arithmetic), or touches a file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "elf.h"

#define EHDR_SIZE     64
#define PHDR_SIZE     56
#define SHDR_SIZE     64
#define DYN_SIZE      16
#define MAX_PHNUM     4096
#define MAX_SHNUM     65280
#define MAX_LOADS     64
#define MAX_PATH_TEXT 4096

#define PT_LOAD    1
#define PT_DYNAMIC 2
#define PT_INTERP  3

#define DT_NULL    0
#define DT_NEEDED  1
#define DT_STRTAB  5
#define DT_STRSZ   10
#define DT_RPATH   15
#define DT_RUNPATH 29

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* True if [off, off+size) lies inside a buffer of len bytes. */
static bool in_bounds(uint64_t off, uint64_t size, size_t len)
{
	return off <= len && size <= len - off;
}

bool img_elf_is_elf(const void *buf, size_t len)
{
	return len >= 4 && memcmp(buf, "\177ELF", 4) == 0;
}

/* Checks the identification bytes common to both readers. */
static int check_ident(const uint8_t *b, size_t len, char *err, size_t errlen)
{
	if (!img_elf_is_elf(b, len))
		return rb_errf(err, errlen, "not an ELF file");
	if (len < EHDR_SIZE)
		return rb_errf(err, errlen, "truncated ELF header");
	if (b[4] != 2 || b[5] != 1)
		return rb_errf(err, errlen,
		               "only 64-bit little-endian ELF is supported (class %u, data %u)",
		               b[4], b[5]);
	return 0;
}

/* A string at off inside [base, base+size) of buf: NUL-terminated there,
 * non-empty, no control characters. Returns a copy or NULL. */
static char *dup_str(const uint8_t *buf, uint64_t base, uint64_t size, uint64_t off)
{
	const uint8_t *s, *nul;
	size_t n;
	char *r;

	if (off >= size)
		return NULL;
	s = buf + base + off;
	nul = memchr(s, '\0', (size_t)(size - off));
	if (!nul || nul == s || (size_t)(nul - s) > MAX_PATH_TEXT)
		return NULL;
	n = (size_t)(nul - s);
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] == 0x7f)
			return NULL;
	r = malloc(n + 1);
	if (!r)
		return NULL;
	memcpy(r, s, n + 1);
	return r;
}

void img_elf_info_clear(struct img_elf_info *info)
{
	if (!info)
		return;
	free(info->interp);
	free(info->rpath);
	free(info->runpath);
	for (size_t i = 0; i < info->n_needed; i++)
		free(info->needed[i]);
	free(info->needed);
	memset(info, 0, sizeof(*info));
}

struct load_seg {
	uint64_t vaddr, offset, filesz;
};

/* Translates a virtual address to a file offset through the PT_LOAD
 * segments; -EINVAL if no segment's file image holds it. */
static int vaddr_to_off(const struct load_seg *loads, size_t n, uint64_t addr, uint64_t *ret)
{
	for (size_t i = 0; i < n; i++) {
		if (addr >= loads[i].vaddr && addr - loads[i].vaddr < loads[i].filesz) {
			*ret = loads[i].offset + (addr - loads[i].vaddr);
			return 0;
		}
	}
	return -EINVAL;
}

/* Reads the dynamic section at [doff, doff+dsize) into info. */
static int parse_dynamic(const uint8_t *b, size_t len, uint64_t doff, uint64_t dsize,
                         const struct load_seg *loads, size_t n_loads, struct img_elf_info *info,
                         char *err, size_t errlen)
{
	uint64_t strtab = 0, strsz = 0, stroff, rpath = UINT64_MAX, runpath = UINT64_MAX;
	uint64_t needed[IMG_ELF_MAX_NEEDED];
	size_t n_needed = 0;
	bool have_strtab = false;

	for (uint64_t p = doff; p + DYN_SIZE <= doff + dsize; p += DYN_SIZE) {
		uint64_t tag = rd64(b + p), val = rd64(b + p + 8);
		if (tag == DT_NULL)
			break;
		switch (tag) {
		case DT_NEEDED:
			if (n_needed == IMG_ELF_MAX_NEEDED)
				return rb_errf(err, errlen, "more than %d DT_NEEDED entries",
				               IMG_ELF_MAX_NEEDED);
			needed[n_needed++] = val;
			break;
		case DT_STRTAB:
			strtab = val;
			have_strtab = true;
			break;
		case DT_STRSZ:
			strsz = val;
			break;
		case DT_RPATH:
			rpath = val;
			break;
		case DT_RUNPATH:
			runpath = val;
			break;
		default:
			break;
		}
	}
	if (n_needed == 0 && rpath == UINT64_MAX && runpath == UINT64_MAX)
		return 0; /* static-pie and friends: nothing to resolve */
	if (!have_strtab || strsz == 0)
		return rb_errf(err, errlen, "dynamic section without a string table");
	if (vaddr_to_off(loads, n_loads, strtab, &stroff) < 0 || !in_bounds(stroff, strsz, len))
		return rb_errf(err, errlen, "dynamic string table outside the file");
	info->needed = calloc(n_needed ? n_needed : 1, sizeof(char *));
	if (!info->needed)
		return -ENOMEM;
	for (size_t i = 0; i < n_needed; i++) {
		info->needed[i] = dup_str(b, stroff, strsz, needed[i]);
		if (!info->needed[i])
			return rb_errf(err, errlen, "DT_NEEDED #%zu: bad string", i + 1);
		info->n_needed++;
	}
	if (rpath != UINT64_MAX && !(info->rpath = dup_str(b, stroff, strsz, rpath)))
		return rb_errf(err, errlen, "DT_RPATH: bad string");
	if (runpath != UINT64_MAX && !(info->runpath = dup_str(b, stroff, strsz, runpath)))
		return rb_errf(err, errlen, "DT_RUNPATH: bad string");
	return 0;
}

int img_elf_parse(const void *buf, size_t len, struct img_elf_info *ret, char *err, size_t errlen)
{
	const uint8_t *b = buf;
	struct img_elf_info info = { 0 };
	struct load_seg loads[MAX_LOADS];
	size_t n_loads = 0;
	uint64_t phoff, doff = 0, dsize = 0;
	uint16_t phentsize, phnum;
	bool have_dyn = false;
	int e;

	e = check_ident(b, len, err, errlen);
	if (e < 0)
		return e;
	info.type = rd16(b + 16);
	info.machine = rd16(b + 18);
	if (info.type != 2 && info.type != 3)
		return rb_errf(err, errlen, "not an executable or shared library (ELF type %u)",
		               info.type);
	phoff = rd64(b + 32);
	phentsize = rd16(b + 54);
	phnum = rd16(b + 56);
	if (phnum == 0xffff || phnum > MAX_PHNUM)
		return rb_errf(err, errlen, "unsupported program header count %u", phnum);
	if (phnum && (phentsize < PHDR_SIZE || !in_bounds(phoff, (uint64_t)phnum * phentsize, len)))
		return rb_errf(err, errlen, "program headers outside the file");
	for (uint16_t i = 0; i < phnum; i++) {
		const uint8_t *ph = b + phoff + (uint64_t)i * phentsize;
		uint32_t type = rd32(ph);
		uint64_t off = rd64(ph + 8), vaddr = rd64(ph + 16), filesz = rd64(ph + 32);

		if (type == PT_LOAD) {
			if (n_loads == MAX_LOADS) {
				e = rb_errf(err, errlen, "more than %d PT_LOAD segments",
				            MAX_LOADS);
				goto fail;
			}
			if (!in_bounds(off, filesz, len)) {
				e = rb_errf(err, errlen, "PT_LOAD outside the file");
				goto fail;
			}
			loads[n_loads++] = (struct load_seg){ vaddr, off, filesz };
		} else if (type == PT_INTERP) {
			if (info.interp || !in_bounds(off, filesz, len) ||
			    !(info.interp = dup_str(b, off, filesz, 0)) || info.interp[0] != '/') {
				e = rb_errf(err, errlen, "bad PT_INTERP");
				goto fail;
			}
		} else if (type == PT_DYNAMIC) {
			if (have_dyn || !in_bounds(off, filesz, len)) {
				e = rb_errf(err, errlen, "bad PT_DYNAMIC");
				goto fail;
			}
			have_dyn = true;
			doff = off;
			dsize = filesz;
		}
	}
	info.dynamic = have_dyn;
	if (have_dyn) {
		e = parse_dynamic(b, len, doff, dsize, loads, n_loads, &info, err, errlen);
		if (e < 0)
			goto fail;
	}
	*ret = info;
	return 0;
fail:
	img_elf_info_clear(&info);
	return e;
}

int img_elf_section(const void *buf, size_t len, const char *name, size_t *ret_off,
                    size_t *ret_size, char *err, size_t errlen)
{
	const uint8_t *b = buf, *strsh;
	uint64_t shoff, stroff, strsize;
	uint16_t shentsize, shnum, shstrndx;
	size_t nlen = strlen(name);
	int e;

	e = check_ident(b, len, err, errlen);
	if (e < 0)
		return e;
	shoff = rd64(b + 40);
	shentsize = rd16(b + 58);
	shnum = rd16(b + 60);
	shstrndx = rd16(b + 62);
	if (shnum == 0)
		return -ENOENT;
	if (shnum > MAX_SHNUM || shentsize < SHDR_SIZE || shstrndx >= shnum ||
	    !in_bounds(shoff, (uint64_t)shnum * shentsize, len))
		return rb_errf(err, errlen, "section headers outside the file");
	strsh = b + shoff + (uint64_t)shstrndx * shentsize;
	stroff = rd64(strsh + 24);
	strsize = rd64(strsh + 32);
	if (!in_bounds(stroff, strsize, len))
		return rb_errf(err, errlen, "section name table outside the file");
	for (uint16_t i = 0; i < shnum; i++) {
		const uint8_t *sh = b + shoff + (uint64_t)i * shentsize;
		uint32_t nameoff = rd32(sh), type = rd32(sh + 4);
		uint64_t off = rd64(sh + 24), size = rd64(sh + 32);

		if (nameoff >= strsize || strsize - nameoff < nlen + 1 ||
		    memcmp(b + stroff + nameoff, name, nlen + 1) != 0)
			continue;
		if (type == 8 /* SHT_NOBITS */ || !in_bounds(off, size, len))
			return rb_errf(err, errlen, "section %s outside the file", name);
		*ret_off = (size_t)off;
		*ret_size = (size_t)size;
		return 0;
	}
	return -ENOENT;
}

int img_elf_modinfo_each(const char *sec, size_t size, const char *key,
                         int (*fn)(const char *value, size_t value_len, void *arg), void *arg)
{
	size_t klen = strlen(key), i = 0;

	while (i < size) {
		const char *s = sec + i;
		const char *nul = memchr(s, '\0', size - i);
		size_t n = nul ? (size_t)(nul - s) : size - i;

		if (n > klen && memcmp(s, key, klen) == 0 && s[klen] == '=') {
			int r = fn(s + klen + 1, n - klen - 1, arg);
			if (r)
				return r;
		}
		i += n + 1;
	}
	return 0;
}
