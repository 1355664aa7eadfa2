/* Kernel modules for the boot initramfs: finds modules by name in a kernel
 * tree (ROOT/lib/modules/VERSION), resolves their dependencies and gives
 * them back decompressed, in an order in which insmod can load them. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct img_kmod {
	char *name;    /* normalised: '-' becomes '_' */
	char *relpath; /* below lib/modules/VERSION, as found (.ko, .ko.xz, ...) */
	char *outpath; /* relpath without the compression suffix */
	char **deps;   /* names of hard dependencies */
	size_t n_deps;
	char **softpre; /* "softdep pre:" names: loaded first when the tree has them */
	size_t n_softpre;
	char **firmware; /* modinfo firmware= names (relative to /lib/firmware) */
	size_t n_firmware;
	uint8_t *data; /* the decompressed module once loaded, NULL before */
	size_t len;
	int state; /* 0 not visited, 1 being resolved, 2 in the load order */
	bool loaded;
};

struct img_kmods {
	char *version;
	int dirfd;             /* ROOT/lib/modules/VERSION */
	bool have_dep_file;    /* dependencies from modules.dep, else from .modinfo */
	struct img_kmod *mods; /* sorted by name */
	size_t n_mods;
	char **builtin; /* sorted names from modules.builtin */
	size_t n_builtin;
	struct img_kmod **order; /* load order: every module after its dependencies */
	size_t n_order;
	void (*warn)(const char *msg, void *arg);
	void *warn_arg;
};

/* Opens ROOT/lib/modules/VERSION. version NULL: the only version there
 * (with root "/" and several, the running kernel's); otherwise -EINVAL
 * naming them. Indexes modules.dep, or the tree when it has none (Debian's
 * linux-image packages ship without it: depmod runs at install time).
 * warn (may be NULL) hears what is odd but not fatal. */
int img_kmods_open(const char *root, const char *version, void (*warn)(const char *msg, void *arg),
                   void *warn_arg, struct img_kmods **ret, char *err, size_t errlen);
void img_kmods_free(struct img_kmods *k);

/* Adds module name (either spelling, '-' or '_') and everything it depends
 * on to the load order, loading and decompressing each. Returns 0 when
 * added (or there already), 1 when the kernel has it built in (nothing to
 * load), -ENOENT when the kernel has no such module, another -errno on a
 * broken tree (a missing dependency, a cycle, an unreadable file). */
int img_kmods_add(struct img_kmods *k, const char *name, char *err, size_t errlen);

/* modules.dep for the modules in the load order (paths without compression
 * suffix), so busybox modprobe works in the rescue shell. Caller frees. */
int img_kmods_dep_text(const struct img_kmods *k, char **ret, size_t *ret_len);
