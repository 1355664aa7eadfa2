/* The boot initramfs of rackboot-agent (rackboot-image initramfs): a newc
 * cpio, gzip or zstd compressed, holding the agent and the shared
 * libraries it needs, busybox, kernel modules for network and disks, the
 * trusted public keys, the tools the agent runs for rootfs tarballs
 * (sfdisk, mkfs.*) with their libraries, and an /init that brings the node
 * onto the network and runs `rackboot-agent run`. See docs/initramfs.md. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_INITRAMFS_MAX_KEYS  16
#define IMG_INITRAMFS_MAX_FILES 64
#define IMG_INITRAMFS_MAX_TOOLS 64

/* The modules a netbooting server needs: virtio, SATA/NVMe/SAS disks and
 * the common server NICs. NULL-terminated. */
extern const char *const img_initramfs_default_modules[];

struct img_initramfs_opts {
	const char *agent;          /* the rackboot-agent binary (required) */
	const char *busybox;        /* NULL: /bin/busybox */
	bool no_modules;            /* a kernel with everything built in */
	const char *kernel_dir;     /* root holding lib/modules/VERSION; NULL: "/" */
	const char *kernel_version; /* NULL: the only one there */
	const char *const *modules; /* NULL: img_initramfs_default_modules */
	size_t n_modules;
	bool modules_explicit;    /* a module the kernel lacks is an error */
	const char *firmware_dir; /* NULL: no firmware */
	const char *const *trust; /* public keys, at least one */
	size_t n_trust;
	const char *const *files; /* extra "SRC:/DEST" */
	size_t n_files;
	/* Programs with their libraries (--tool): a path, or a name looked for
	 * in /sbin, /usr/sbin, /usr/bin; missing or not ELF is an error. They
	 * replace a default tool of the same name. */
	const char *const *tools;
	size_t n_tools;
	bool no_tools;   /* leave out the default tools (what rootfs tarballs run) */
	bool zstd;       /* else gzip */
	int level;       /* 0: 9 for gzip, 19 for zstd */
	long long mtime; /* of every entry (SOURCE_DATE_EPOCH; 0 by default) */
	const char *out;
	void (*warn)(const char *msg, void *arg); /* may be NULL */
	void *warn_arg;
};

struct img_initramfs_stats {
	size_t entries, files, libs, modules, builtin, firmware, firmware_missing, keys;
	size_t tools;         /* programs added by --tool and the default set */
	char tool_names[512]; /* their names, ", " between them ("" for none) */
	uint64_t bytes_in;    /* file contents before compression */
	uint64_t size;        /* of the output file */
	char kernel_version[128];
};

/* Builds the initramfs into o->out (a temporary file renamed over it, so
 * a reader never sees half of one). The same inputs give byte-identical
 * output. On failure err says what and nothing is left at o->out. */
int img_initramfs_build(const struct img_initramfs_opts *o, struct img_initramfs_stats *ret,
                        char *err, size_t errlen);

/* The rackboot-agent installed next to this program: the same directory
 * (installed) or ../agent/ (a meson build tree). -ENOENT if neither. */
int img_initramfs_default_agent(char *buf, size_t len);
