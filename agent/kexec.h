/* kexec: after imaging, start the installed system's kernel without a
 * firmware reboot (profile after = "kexec"). See agent/kexec.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define AGENT_KEXEC_PATH_MAX    256
#define AGENT_KEXEC_INITRDS     8
#define AGENT_KEXEC_CMDLINE_MAX 2048 /* x86's COMMAND_LINE_SIZE */

/* One boot entry of the installed system. Paths are relative to the root
 * partition's top, without a leading '/'. */
struct agent_boot_entry {
	char kernel[AGENT_KEXEC_PATH_MAX];
	char initrd[AGENT_KEXEC_INITRDS][AGENT_KEXEC_PATH_MAX]; /* loaded in this order */
	size_t n_initrd;
	char cmdline[AGENT_KEXEC_CMDLINE_MAX];
	char label[65]; /* the extlinux LABEL or loader entry's title, cut */
};

/* The default entry of an extlinux/syslinux config (len bytes). confdir
 * is the config's directory below the root ("boot/extlinux"): relative
 * paths are relative to it. The entry is MENU DEFAULT's, else DEFAULT's
 * LABEL, else the first LABEL; KERNEL or LINUX, INITRD (a comma-separated
 * list, else initrd= words of APPEND), APPEND (the global one for a label
 * without its own; "APPEND -" is none). -EINVAL with a reason when there is
 * no usable entry (no LABEL, DEFAULT naming none, no kernel, a COM32
 * module, a path with "..", too long). */
int agent_extlinux_parse(const char *text, size_t len, const char *confdir,
                         struct agent_boot_entry *ret, char *err, size_t errlen);

/* A Boot Loader Specification entry (loader/entries/NAME.conf): linux,
 * initrd (repeated), options (repeated, joined). Paths are relative to the
 * file system holding the entries (leading '/' dropped). -EINVAL with a
 * reason for an entry without linux, with efi only, or too long. */
int agent_bls_parse(const char *text, size_t len, struct agent_boot_entry *ret, char *err,
                    size_t errlen);

/* Finds the installed system's boot entry below rootfd (the mounted root
 * partition): extlinux/syslinux configs in boot/extlinux, extlinux,
 * boot/syslinux, syslinux; then the newest loader entry in
 * boot/loader/entries (file names in version order); then the kernel and
 * initrd links boot/vmlinuz or vmlinuz with boot/initrd.img, initrd.img or
 * boot/initrd, whose kernel line is etc/kernel/cmdline or
 * "root=UUID=<root_uuid> ro". A path not found at the root is looked up
 * below boot/ too (a config written for a separate /boot). extra_args (the
 * profile's kernel_args) are appended to the line unless it has them.
 * Each candidate's kernel and initrds must exist. -ENOENT with what was
 * tried when nothing boots. */
int agent_kexec_find_entry(int rootfd, const char *root_uuid, const char *extra_args,
                           struct agent_boot_entry *ret, char *what, size_t whatlen, char *err,
                           size_t errlen);

/* Opens a path of an entry below rootfd: symlinks resolve inside the root
 * (RESOLVE_IN_ROOT), never outside it. An fd or -errno. */
int agent_kexec_open(int rootfd, const char *path);

struct agent_kexec_opts {
	const char *target;      /* the imaged disk, a block device */
	unsigned root_partition; /* 0 = the largest ext4/xfs partition */
	const char *extra_args;  /* the profile's kernel_args, "" for none */
	const char *sysfs;       /* NULL: "/sys" */
};

/* Mounts the target's root partition read-only on a private directory,
 * finds its boot entry, loads kernel and initrd with kexec_file_load(2)
 * and unmounts. After 0, reboot(RB_KEXEC) starts it. -errno with a reason
 * naming the cause (no kernel found, kexec not supported or not permitted,
 * a signature the running kernel requires) otherwise: the caller reboots
 * through the firmware instead. A one-line account in report. */
int agent_kexec_load(const struct agent_kexec_opts *o, char *report, size_t replen, char *err,
                     size_t errlen);
