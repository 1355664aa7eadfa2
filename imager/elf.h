/* Bounded ELF readers for the initramfs builder: what a program needs to
 * run (interpreter, DT_NEEDED, RPATH/RUNPATH) and the sections of a kernel
 * module (.modinfo). Pure parsing of a buffer; no file is opened here and
 * nothing is ever executed. 64-bit little-endian ELF only. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_ELF_MAX_NEEDED 256

struct img_elf_info {
	uint16_t machine; /* e_machine */
	uint16_t type;    /* e_type: 2 exec, 3 dyn (PIE or library), 1 rel (.ko) */
	bool dynamic;     /* has PT_DYNAMIC (static-pie also has one, with no NEEDED) */
	char *interp;     /* PT_INTERP, NULL if none */
	char *rpath;      /* DT_RPATH (colon list), NULL if none */
	char *runpath;    /* DT_RUNPATH (colon list), NULL if none */
	char **needed;    /* DT_NEEDED sonames, in order */
	size_t n_needed;
};

/* True if buf starts like an ELF file (any class). */
bool img_elf_is_elf(const void *buf, size_t len);

/* Parses an executable or shared object. Every offset, size and string is
 * checked against len; malformed input is -EINVAL with err saying what. */
int img_elf_parse(const void *buf, size_t len, struct img_elf_info *ret, char *err, size_t errlen);
void img_elf_info_clear(struct img_elf_info *info);

/* Finds the section called name in an ELF file (section headers, any
 * e_type): its bytes at *ret_off, *ret_size inside buf. -ENOENT if absent,
 * -EINVAL if the headers are malformed. */
int img_elf_section(const void *buf, size_t len, const char *name, size_t *ret_off,
                    size_t *ret_size, char *err, size_t errlen);

/* Iterates "key=value" strings of a .modinfo section: for every value of
 * key, calls fn(value, value_len, arg) (value not NUL-terminated past
 * value_len; it is inside the section). Stops at the first non-zero
 * return and returns it. */
int img_elf_modinfo_each(const char *sec, size_t size, const char *key,
                         int (*fn)(const char *value, size_t value_len, void *arg), void *arg);
