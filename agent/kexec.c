/* kexec: the fast swap. After stage 1 and stage 2 the agent can start the
 * installed system's kernel straight away with kexec instead of a reboot
 * through the firmware (whose self-test takes minutes on real servers).
 *
 *  1. The root partition of the imaged disk, as stage 2 chose it (the
 *     plan's root_partition or the largest ext4/xfs partition), from the
 *     disk's own table; its device from sysfs (stage 2 made the kernel
 *     read the table; else BLKRRPART here).
 *  2. Mounted read-only on a private mkdtemp directory: nothing on the
 *     disk changes.
 *  3. The boot entry the installed system's boot loader would take: its
 *     extlinux/syslinux config (what stage 2 put kernel_args into), a Boot
 *     Loader Specification entry, or the distribution's vmlinuz/initrd.img
 *     links with etc/kernel/cmdline or root=UUID=. Paths resolve inside the
 *     mounted root only.
 *  4. kexec_file_load(2) with the kernel and initrd as file descriptors (the
 *     running kernel parses and, where it demands it, verifies the image: no
 *     kexec-tools in the initramfs); several initrds are concatenated in a
 *     memfd, as a boot loader does in memory.
 *  5. Unmounted. The caller reports the step, syncs and calls
 *     reboot(RB_KEXEC).
 *
 * Owns the private directory, its device node and the mount while loading.
 * Never writes to the disk, never opens a path outside the mounted root,
 * never leaves a mount behind, and never reboots: on any failure the caller
 * falls back to the firmware reboot with the reason from here. */
#include "agent/kexec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/kexec.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/plain.h"
#include "agent/rootfs.h"
#include "agent/stage2.h"
#include "common/util.h"

#define CONF_MAX  (256 * 1024) /* a boot config larger than this is not read */
#define MAX_PARTS 128
#define HEAD_MAX  (1024 * 1024)
#define MAX_BLS   256

#ifndef KEXEC_FILE_NO_INITRAMFS
#define KEXEC_FILE_NO_INITRAMFS 0x00000004
#endif

/* ---- parsing --------------------------------------------------------------------- */

/* The next line of text: [*pos, end) with blanks and CR trimmed on both
 * sides; false at the end. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **ret, size_t *ret_len)
{
	size_t s = *pos, e;

	if (s >= len)
		return false;
	e = s;
	while (e < len && text[e] != '\n')
		e++;
	*pos = e < len ? e + 1 : e;
	while (s < e && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r'))
		s++;
	while (e > s && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r'))
		e--;
	*ret = text + s;
	*ret_len = e - s;
	return true;
}

/* Splits a line into its keyword (case-insensitive match against kw) and
 * the rest after blanks. */
static bool keyword(const char *line, size_t n, const char *kw, const char **ret, size_t *ret_len)
{
	size_t k = strlen(kw);

	if (n < k || strncasecmp(line, kw, k) != 0 || (n > k && line[k] != ' ' && line[k] != '\t'))
		return false;
	while (k < n && (line[k] == ' ' || line[k] == '\t'))
		k++;
	*ret = line + k;
	*ret_len = n - k;
	return true;
}

static int copy_n(char *dst, size_t dstlen, const char *src, size_t n)
{
	if (n >= dstlen)
		return -ENAMETOOLONG;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

/* dir/path or path (leading '/' dropped) into ret; checked for shape. */
static int entry_path(const char *dir, const char *path, size_t n, char ret[AGENT_KEXEC_PATH_MAX],
                      char *err, size_t errlen)
{
	char tmp[AGENT_KEXEC_PATH_MAX];
	int w;

	while (n && *path == '/') {
		path++;
		n--;
		dir = NULL;
	}
	if (copy_n(tmp, sizeof(tmp), path, n) < 0)
		return agent_errf(err, errlen, -EINVAL, "path longer than %d characters",
		                  AGENT_KEXEC_PATH_MAX - 1);
	if (dir && *dir)
		w = snprintf(ret, AGENT_KEXEC_PATH_MAX, "%s/%s", dir, tmp);
	else
		w = snprintf(ret, AGENT_KEXEC_PATH_MAX, "%s", tmp);
	if (w < 0 || w >= AGENT_KEXEC_PATH_MAX)
		return agent_errf(err, errlen, -EINVAL, "path longer than %d characters",
		                  AGENT_KEXEC_PATH_MAX - 1);
	if (!rb_path_is_safe(ret))
		return agent_errf(err, errlen, -EINVAL,
		                  "path \"%s\" is not a plain path below the root", ret);
	return 0;
}

/* Adds the comma-separated list s (n bytes) to e's initrds. */
static int add_initrds(struct agent_boot_entry *e, const char *dir, const char *s, size_t n,
                       char *err, size_t errlen)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		int r;

		while (j < n && s[j] != ',')
			j++;
		if (j > i) {
			if (e->n_initrd == AGENT_KEXEC_INITRDS)
				return agent_errf(err, errlen, -EINVAL, "more than %d initrds",
				                  AGENT_KEXEC_INITRDS);
			r = entry_path(dir, s + i, j - i, e->initrd[e->n_initrd], err, errlen);
			if (r < 0)
				return r;
			e->n_initrd++;
		}
		i = j + 1;
	}
	return 0;
}

/* What one extlinux LABEL block says, as spans into the text. */
struct xl_label {
	const char *name, *kernel, *initrd, *append;
	size_t name_n, kernel_n, initrd_n, append_n;
	bool has_append, menu_default;
};

#define XL_MAX_LABELS 128

static bool span_eq(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && strncmp(a, b, an) == 0;
}

int agent_extlinux_parse(const char *text, size_t len, const char *confdir,
                         struct agent_boot_entry *ret, char *err, size_t errlen)
{
	struct xl_label *labels = calloc(XL_MAX_LABELS, sizeof(*labels)), *cur = NULL, *pick = NULL;
	const char *dflt = NULL, *gappend = NULL, *line, *arg;
	size_t n_labels = 0, dflt_n = 0, gappend_n = 0, pos = 0, n, an;
	bool has_gappend = false;
	struct agent_boot_entry e = { 0 };
	int r = -EINVAL;

	if (!labels)
		return -ENOMEM;
	while (next_line(text, len, &pos, &line, &n)) {
		if (n == 0 || line[0] == '#')
			continue;
		if (keyword(line, n, "label", &arg, &an)) {
			if (n_labels == XL_MAX_LABELS) {
				r = agent_errf(err, errlen, -EINVAL, "more than %d LABELs",
				               XL_MAX_LABELS);
				goto out;
			}
			cur = &labels[n_labels++];
			cur->name = arg;
			cur->name_n = an;
		} else if (keyword(line, n, "default", &arg, &an)) {
			dflt = arg;
			dflt_n = an;
		} else if (keyword(line, n, "menu", &arg, &an)) {
			const char *a2;
			size_t a2n;

			if (cur && keyword(arg, an, "default", &a2, &a2n))
				cur->menu_default = true;
		} else if (keyword(line, n, "kernel", &arg, &an) ||
		           keyword(line, n, "linux", &arg, &an)) {
			if (cur) {
				cur->kernel = arg;
				cur->kernel_n = an;
			}
		} else if (keyword(line, n, "initrd", &arg, &an)) {
			if (cur) {
				cur->initrd = arg;
				cur->initrd_n = an;
			}
		} else if (keyword(line, n, "append", &arg, &an)) {
			if (an == 1 && arg[0] == '-')
				an = 0;
			if (cur) {
				cur->append = arg;
				cur->append_n = an;
				cur->has_append = true;
			} else {
				gappend = arg;
				gappend_n = an;
				has_gappend = true;
			}
		}
	}
	if (n_labels == 0) {
		r = agent_errf(err, errlen, -EINVAL, "no LABEL");
		goto out;
	}
	for (size_t i = 0; i < n_labels && !pick; i++)
		if (labels[i].menu_default)
			pick = &labels[i];
	for (size_t i = 0; i < n_labels && !pick && dflt; i++)
		if (span_eq(labels[i].name, labels[i].name_n, dflt, dflt_n))
			pick = &labels[i];
	if (!pick && dflt) {
		r = agent_errf(err, errlen, -EINVAL, "DEFAULT %.*s names no LABEL",
		               (int)RB_MIN(dflt_n, 64U), dflt);
		goto out;
	}
	if (!pick)
		pick = &labels[0];
	copy_n(e.label, sizeof(e.label), pick->name, RB_MIN(pick->name_n, sizeof(e.label) - 1));
	if (!pick->kernel || pick->kernel_n == 0) {
		r = agent_errf(err, errlen, -EINVAL, "LABEL %s has no KERNEL or LINUX", e.label);
		goto out;
	}
	if (pick->kernel_n > 4 && !strncasecmp(pick->kernel + pick->kernel_n - 4, ".c32", 4)) {
		r = agent_errf(err, errlen, -EINVAL, "LABEL %s starts a COM32 module, not Linux",
		               e.label);
		goto out;
	}
	if ((r = entry_path(confdir, pick->kernel, pick->kernel_n, e.kernel, err, errlen)) < 0)
		goto out;
	if (!pick->has_append && has_gappend) {
		pick->append = gappend;
		pick->append_n = gappend_n;
	}
	if (pick->append &&
	    copy_n(e.cmdline, sizeof(e.cmdline), pick->append, pick->append_n) < 0) {
		r = agent_errf(err, errlen, -EINVAL, "LABEL %s: APPEND longer than %d characters",
		               e.label, AGENT_KEXEC_CMDLINE_MAX - 1);
		goto out;
	}
	if (pick->initrd) {
		r = add_initrds(&e, confdir, pick->initrd, pick->initrd_n, err, errlen);
	} else {
		/* syslinux also takes initrd=A,B among the APPEND words */
		size_t i = 0, cn = strlen(e.cmdline);

		r = 0;
		while (r == 0 && i < cn) {
			size_t j = i;

			while (j < cn && e.cmdline[j] != ' ' && e.cmdline[j] != '\t')
				j++;
			if (j - i > 7 && !strncmp(e.cmdline + i, "initrd=", 7))
				r = add_initrds(&e, confdir, e.cmdline + i + 7, j - i - 7, err,
				                errlen);
			i = j + 1;
		}
	}
	if (r < 0)
		goto out;
	*ret = e;
	r = 0;
out:
	free(labels);
	return r;
}

int agent_bls_parse(const char *text, size_t len, struct agent_boot_entry *ret, char *err,
                    size_t errlen)
{
	struct agent_boot_entry e = { 0 };
	const char *line, *arg;
	size_t pos = 0, n, an, cl = 0;
	bool efi = false;
	int r;

	while (next_line(text, len, &pos, &line, &n)) {
		if (n == 0 || line[0] == '#')
			continue;
		if (keyword(line, n, "linux", &arg, &an)) {
			if ((r = entry_path(NULL, arg, an, e.kernel, err, errlen)) < 0)
				return r;
		} else if (keyword(line, n, "initrd", &arg, &an)) {
			if (e.n_initrd == AGENT_KEXEC_INITRDS)
				return agent_errf(err, errlen, -EINVAL, "more than %d initrds",
				                  AGENT_KEXEC_INITRDS);
			if ((r = entry_path(NULL, arg, an, e.initrd[e.n_initrd], err, errlen)) < 0)
				return r;
			e.n_initrd++;
		} else if (keyword(line, n, "options", &arg, &an)) {
			if (cl + (cl ? 1 : 0) + an >= sizeof(e.cmdline))
				return agent_errf(err, errlen, -EINVAL,
				                  "options longer than %d characters",
				                  AGENT_KEXEC_CMDLINE_MAX - 1);
			if (cl)
				e.cmdline[cl++] = ' ';
			memcpy(e.cmdline + cl, arg, an);
			cl += an;
			e.cmdline[cl] = '\0';
		} else if (keyword(line, n, "title", &arg, &an)) {
			copy_n(e.label, sizeof(e.label), arg, RB_MIN(an, sizeof(e.label) - 1));
		} else if (keyword(line, n, "efi", &arg, &an)) {
			efi = true;
		}
	}
	if (!e.kernel[0])
		return agent_errf(err, errlen, -EINVAL,
		                  efi ? "an efi entry (an EFI program, not a Linux kernel)"
		                      : "no linux line");
	*ret = e;
	return 0;
}

/* ---- finding the entry in the mounted root ---------------------------------------- */

int agent_kexec_open(int rootfd, const char *path)
{
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
		                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	long fd;

	if (!rb_path_is_safe(path))
		return -EACCES;
	fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
	if (fd >= 0)
		return (int)fd;
	if (errno == ENOSYS) /* older than 5.6: symlinks may not leave the root at all */
		return rb_open_beneath(rootfd, path, O_RDONLY);
	return -errno;
}

/* Whether path names a regular file in the root; else under boot/ (a
 * config written for a separate /boot partition), rewriting path. */
static int resolve(int rootfd, char path[AGENT_KEXEC_PATH_MAX])
{
	char alt[AGENT_KEXEC_PATH_MAX];
	struct stat st;
	int fd, e;

	fd = agent_kexec_open(rootfd, path);
	if (fd == -ENOENT && strncmp(path, "boot/", 5) != 0 &&
	    snprintf(alt, sizeof(alt), "boot/%s", path) < (int)sizeof(alt)) {
		fd = agent_kexec_open(rootfd, alt);
		if (fd >= 0)
			snprintf(path, AGENT_KEXEC_PATH_MAX, "%s", alt);
	}
	if (fd < 0)
		return fd;
	e = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EISDIR;
	close(fd);
	return e;
}

static int resolve_entry(int rootfd, struct agent_boot_entry *e, char *err, size_t errlen)
{
	int r = resolve(rootfd, e->kernel);

	if (r < 0)
		return agent_errf(err, errlen, r, "kernel %s: %s", e->kernel, strerror(-r));
	for (size_t i = 0; i < e->n_initrd; i++)
		if ((r = resolve(rootfd, e->initrd[i])) < 0)
			return agent_errf(err, errlen, r, "initrd %s: %s", e->initrd[i],
			                  strerror(-r));
	return 0;
}

/* The whole of a small file below the root, NUL-terminated. */
static int read_small(int rootfd, const char *path, char **ret, size_t *ret_len)
{
	int fd = agent_kexec_open(rootfd, path);
	char *buf;
	ssize_t k;
	size_t n = 0;

	if (fd < 0)
		return fd;
	buf = malloc(CONF_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (n < CONF_MAX && (k = read(fd, buf + n, CONF_MAX - n)) > 0)
		n += (size_t)k;
	close(fd);
	buf[n] = '\0';
	*ret = buf;
	*ret_len = n;
	return 0;
}

/* Appends extra to the kernel line unless it is already there. */
static int add_args(struct agent_boot_entry *e, const char *extra, char *err, size_t errlen)
{
	size_t n = strlen(e->cmdline);

	if (!extra || !*extra || strstr(e->cmdline, extra))
		return 0;
	if (n + 1 + strlen(extra) >= sizeof(e->cmdline))
		return agent_errf(err, errlen, -E2BIG, "kernel line over %d characters with %s",
		                  AGENT_KEXEC_CMDLINE_MAX - 1, extra);
	snprintf(e->cmdline + n, sizeof(e->cmdline) - n, "%s%s", n ? " " : "", extra);
	return 0;
}

static void note(char *what, size_t whatlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void note(char *what, size_t whatlen, const char *fmt, ...)
{
	size_t n = strlen(what);
	va_list ap;

	if (n + 3 >= whatlen)
		return;
	if (n) {
		what[n++] = ';';
		what[n++] = ' ';
		what[n] = '\0';
	}
	va_start(ap, fmt);
	vsnprintf(what + n, whatlen - n, fmt, ap);
	va_end(ap);
}

static int try_extlinux(int rootfd, struct agent_boot_entry *ret, char *tried, size_t triedlen,
                        char *what, size_t whatlen)
{
	static const char *const confs[][2] = {
		{ "boot/extlinux", "extlinux.conf" }, { "extlinux", "extlinux.conf" },
		{ "boot/syslinux", "syslinux.cfg" },  { "syslinux", "syslinux.cfg" },
		{ "boot/syslinux", "extlinux.conf" },
	};

	for (size_t i = 0; i < RB_ARRAY_SIZE(confs); i++) {
		char path[AGENT_KEXEC_PATH_MAX], why[256];
		char *text;
		size_t len;
		int r;

		snprintf(path, sizeof(path), "%s/%s", confs[i][0], confs[i][1]);
		if (read_small(rootfd, path, &text, &len) < 0)
			continue;
		r = agent_extlinux_parse(text, len, confs[i][0], ret, why, sizeof(why));
		free(text);
		if (r == 0 && (r = resolve_entry(rootfd, ret, why, sizeof(why))) == 0) {
			snprintf(what, whatlen, "%s LABEL %s", path, ret->label);
			return 0;
		}
		note(tried, triedlen, "%s: %s", path, why);
	}
	return -ENOENT;
}

static int bls_filter(const struct dirent *de)
{
	size_t n = strlen(de->d_name);

	return de->d_name[0] != '.' && n > 5 && !strcmp(de->d_name + n - 5, ".conf");
}

static int bls_sort(const struct dirent **a, const struct dirent **b)
{
	return -strverscmp((*a)->d_name, (*b)->d_name); /* newest first */
}

static int try_bls(int rootfd, struct agent_boot_entry *ret, char *tried, size_t triedlen,
                   char *what, size_t whatlen)
{
	struct dirent **list = NULL;
	int dfd, n, r = -ENOENT;

	dfd = agent_kexec_open(rootfd, "boot/loader/entries");
	if (dfd < 0)
		return -ENOENT;
	n = scandirat(dfd, ".", &list, bls_filter, bls_sort);
	for (int i = 0; i < n; i++) {
		char path[AGENT_KEXEC_PATH_MAX], why[256];
		char *text;
		size_t len;

		if (r < 0 && i < MAX_BLS) {
			snprintf(path, sizeof(path), "boot/loader/entries/%.200s", list[i]->d_name);
			if (read_small(rootfd, path, &text, &len) == 0) {
				r = agent_bls_parse(text, len, ret, why, sizeof(why));
				free(text);
				if (r == 0)
					r = resolve_entry(rootfd, ret, why, sizeof(why));
				if (r == 0)
					snprintf(what, whatlen, "%s", path);
				else
					note(tried, triedlen, "%s: %s", path, why);
			}
		}
		free(list[i]);
	}
	free(list);
	close(dfd);
	return r;
}

static int try_links(int rootfd, const char *root_uuid, struct agent_boot_entry *ret, char *tried,
                     size_t triedlen, char *what, size_t whatlen)
{
	static const char *const kernels[] = { "boot/vmlinuz", "vmlinuz" };
	static const char *const initrds[] = { "boot/initrd.img", "initrd.img", "boot/initrd" };
	struct agent_boot_entry e = { 0 };
	char *text;
	size_t len;

	for (size_t i = 0; i < RB_ARRAY_SIZE(kernels) && !e.kernel[0]; i++) {
		snprintf(e.kernel, sizeof(e.kernel), "%s", kernels[i]);
		if (resolve(rootfd, e.kernel) < 0)
			e.kernel[0] = '\0';
	}
	if (!e.kernel[0]) {
		note(tried, triedlen, "no boot/vmlinuz or vmlinuz");
		return -ENOENT;
	}
	for (size_t i = 0; i < RB_ARRAY_SIZE(initrds) && !e.n_initrd; i++) {
		snprintf(e.initrd[0], sizeof(e.initrd[0]), "%s", initrds[i]);
		if (resolve(rootfd, e.initrd[0]) == 0)
			e.n_initrd = 1;
	}
	if (read_small(rootfd, "etc/kernel/cmdline", &text, &len) == 0) {
		while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
			len--;
		copy_n(e.cmdline, sizeof(e.cmdline), text, RB_MIN(len, sizeof(e.cmdline) - 1));
		free(text);
	} else if (root_uuid && *root_uuid) {
		snprintf(e.cmdline, sizeof(e.cmdline), "root=UUID=%s ro", root_uuid);
	} else {
		note(tried, triedlen, "%s: no etc/kernel/cmdline and no root UUID", e.kernel);
		return -ENOENT;
	}
	snprintf(e.label, sizeof(e.label), "%s", e.kernel);
	*ret = e;
	snprintf(what, whatlen, "%s%s%s", e.kernel, e.n_initrd ? " + " : "",
	         e.n_initrd ? e.initrd[0] : "");
	return 0;
}

int agent_kexec_find_entry(int rootfd, const char *root_uuid, const char *extra_args,
                           struct agent_boot_entry *ret, char *what, size_t whatlen, char *err,
                           size_t errlen)
{
	struct agent_boot_entry e;
	char tried[768] = "";

	what[0] = '\0';
	if (try_extlinux(rootfd, &e, tried, sizeof(tried), what, whatlen) < 0 &&
	    try_bls(rootfd, &e, tried, sizeof(tried), what, whatlen) < 0 &&
	    try_links(rootfd, root_uuid, &e, tried, sizeof(tried), what, whatlen) < 0)
		return agent_errf(err, errlen, -ENOENT,
		                  "no kernel to start in the installed system (tried: %s)", tried);
	if (add_args(&e, extra_args, err, errlen) < 0)
		return -E2BIG;
	*ret = e;
	return 0;
}

/* ---- the root partition ------------------------------------------------------------ */

static void uuid_format(const uint8_t *u, char ret[37])
{
	snprintf(ret, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
	         u[13], u[14], u[15]);
}

struct rootpart {
	struct agent_rootpart p;
	char uuid[37];
	dev_t dev;
};

/* The root partition from the disk's table and the kernel's partitions. */
static int find_root(const struct agent_kexec_opts *o, struct rootpart *ret, char *err,
                     size_t errlen)
{
	struct agent_rootpart *parts = calloc(MAX_PARTS, sizeof(*parts));
	uint64_t(*tab)[3] = calloc(MAX_PARTS, sizeof(*tab));
	uint8_t *head = malloc(HEAD_MAX), sb[2048];
	struct agent_part kp;
	unsigned lbs = 512;
	size_t n = 0, idx;
	struct stat st;
	int fd = -1, ssz = 0, e;

	if (!parts || !tab || !head) {
		e = -ENOMEM;
		goto out;
	}
	fd = open(o->target, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		e = agent_errf(err, errlen, -errno, "%s: %s", o->target, strerror(errno));
		goto out;
	}
	if (!S_ISBLK(st.st_mode)) {
		e = agent_errf(err, errlen, -ENOTBLK, "%s is not a block device", o->target);
		goto out;
	}
	if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz >= 512)
		lbs = (unsigned)ssz;
	if ((e = rb_pread_all(fd, head, HEAD_MAX, 0)) < 0 ||
	    agent_table_parts(head, HEAD_MAX, lbs, tab, MAX_PARTS, &n) < 0 || n == 0) {
		e = agent_errf(err, errlen, e < 0 ? e : -ENOENT, "%s: no partition table",
		               o->target);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		parts[i].nr = (unsigned)tab[i][0];
		parts[i].size = tab[i][2];
		snprintf(parts[i].name, sizeof(parts[i].name), "partition %u", parts[i].nr);
		if (rb_pread_all(fd, sb, sizeof(sb), tab[i][1]) == 0)
			snprintf(parts[i].fstype, sizeof(parts[i].fstype), "%s",
			         agent_fs_type(sb, sizeof(sb)));
	}
	if ((e = agent_pick_root(parts, n, o->root_partition, &idx, err, errlen)) < 0)
		goto out;
	memset(ret, 0, sizeof(*ret));
	ret->p = parts[idx];
	for (size_t i = 0; i < n; i++)
		if (tab[i][0] == parts[idx].nr && rb_pread_all(fd, sb, sizeof(sb), tab[i][1]) == 0)
			uuid_format(strcmp(parts[idx].fstype, "xfs") ? sb + 1024 + 104 : sb + 32,
			            ret->uuid);
	e = agent_sysfs_partition(o->sysfs ? o->sysfs : "/sys", st.st_rdev, ret->p.nr, &kp);
	if (e == -ENOENT) { /* stage 2 did not run: the kernel may not know the table */
		ioctl(fd, BLKRRPART);
		e = agent_sysfs_partition(o->sysfs ? o->sysfs : "/sys", st.st_rdev, ret->p.nr, &kp);
	}
	if (e < 0) {
		e = agent_errf(err, errlen, e, "%s: the kernel has no device for partition %u: %s",
		               o->target, ret->p.nr, strerror(-e));
		goto out;
	}
	ret->dev = kp.dev;
	snprintf(ret->p.name, sizeof(ret->p.name), "%s", kp.name);
	e = 0;
out:
	if (fd >= 0)
		close(fd);
	free(parts);
	free(tab);
	free(head);
	return e;
}

/* ---- loading ----------------------------------------------------------------------- */

static const char *load_why(int e)
{
	switch (e) {
	case -ENOSYS:
		return "the running kernel has no kexec_file_load (CONFIG_KEXEC_FILE)";
	case -EPERM:
		return "not permitted (needs CAP_SYS_BOOT; kernel.kexec_load_disabled or a "
		       "lockdown may forbid it)";
	case -EKEYREJECTED:
	case -ENOKEY:
	case -EKEYREVOKED:
	case -EKEYEXPIRED:
	case -EBADMSG:
		return "the running kernel requires a signed kernel (Secure Boot lockdown) and "
		       "this one's signature is missing or not trusted";
	case -ENOEXEC:
		return "not a kernel image the running kernel can load (x86: a bzImage)";
	case -ENOMEM:
		return "not enough memory for the new kernel and initrd";
	case -EBUSY:
		return "a kexec is already in progress";
	default:
		return NULL;
	}
}

/* One fd with the initrds back to back (a memfd for more than one). */
static int open_initrd(int rootfd, const struct agent_boot_entry *en, char *err, size_t errlen)
{
	int mfd, e;

	if (en->n_initrd == 1) {
		int fd = agent_kexec_open(rootfd, en->initrd[0]);

		return fd >= 0 ? fd
		               : agent_errf(err, errlen, fd, "initrd %s: %s", en->initrd[0],
		                            strerror(-fd));
	}
	mfd = memfd_create("rackboot-initrd", MFD_CLOEXEC);
	if (mfd < 0)
		return agent_errf(err, errlen, -errno, "memfd_create: %s", strerror(errno));
	for (size_t i = 0; i < en->n_initrd; i++) {
		char buf[65536];
		ssize_t k;
		int fd = agent_kexec_open(rootfd, en->initrd[i]);

		if (fd < 0) {
			close(mfd);
			return agent_errf(err, errlen, fd, "initrd %s: %s", en->initrd[i],
			                  strerror(-fd));
		}
		while ((k = read(fd, buf, sizeof(buf))) > 0)
			if ((e = rb_write_all(mfd, buf, (size_t)k)) < 0)
				break;
		e = k < 0 ? -errno : e;
		close(fd);
		if (e < 0) {
			close(mfd);
			return agent_errf(err, errlen, e, "initrd %s: %s", en->initrd[i],
			                  strerror(-e));
		}
	}
	return mfd;
}

static int load(int rootfd, const struct agent_boot_entry *en, char *err, size_t errlen)
{
	unsigned long flags = en->n_initrd ? 0 : KEXEC_FILE_NO_INITRAMFS;
	int kfd, ifd = -1, e = 0;
	const char *why;

	kfd = agent_kexec_open(rootfd, en->kernel);
	if (kfd < 0)
		return agent_errf(err, errlen, kfd, "kernel %s: %s", en->kernel, strerror(-kfd));
	if (en->n_initrd && (ifd = open_initrd(rootfd, en, err, errlen)) < 0) {
		close(kfd);
		return ifd;
	}
	if (syscall(SYS_kexec_file_load, kfd, ifd, strlen(en->cmdline) + 1, en->cmdline, flags) <
	    0) {
		e = -errno;
		why = load_why(e);
		agent_errf(err, errlen, e, "kexec_file_load of %s: %s", en->kernel,
		           why ? why : strerror(-e));
	}
	close(kfd);
	if (ifd >= 0)
		close(ifd);
	return e;
}

int agent_kexec_load(const struct agent_kexec_opts *o, char *report, size_t replen, char *err,
                     size_t errlen)
{
	char dir[] = "/tmp/rackboot-kexec.XXXXXX", node[64], mnt[64], what[320];
	struct agent_boot_entry *en = calloc(1, sizeof(*en));
	struct rootpart rp;
	bool mounted = false;
	int e, rootfd = -1;

	if (!en)
		return -ENOMEM;
	if ((e = find_root(o, &rp, err, errlen)) < 0)
		goto out_free;
	if (!mkdtemp(dir)) {
		e = agent_errf(err, errlen, -errno, "mkdtemp %s: %s", dir, strerror(errno));
		goto out_free;
	}
	snprintf(node, sizeof(node), "%s/part", dir);
	snprintf(mnt, sizeof(mnt), "%s/root", dir);
	if (mknod(node, S_IFBLK | 0600, rp.dev) < 0 || mkdir(mnt, 0700) < 0) {
		e = agent_errf(err, errlen, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if (mount(node, mnt, rp.p.fstype, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		e = agent_errf(err, errlen, -errno, "mounting %s (%s) read-only: %s", rp.p.name,
		               rp.p.fstype, strerror(errno));
		goto out;
	}
	mounted = true;
	rootfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		e = agent_errf(err, errlen, -errno, "%s: %s", mnt, strerror(errno));
		goto out;
	}
	if ((e = agent_kexec_find_entry(rootfd, rp.uuid, o->extra_args, en, what, sizeof(what), err,
	                                errlen)) < 0 ||
	    (e = load(rootfd, en, err, errlen)) < 0)
		goto out;
	rb_errf(report, replen, "kexec loaded from %s (%s): %s, %zu initrd(s), kernel line \"%s\"",
	        rp.p.name, what, en->kernel, en->n_initrd, en->cmdline);
	e = 0;
out:
	if (rootfd >= 0)
		close(rootfd);
	if (mounted && umount2(mnt, 0) < 0)
		umount2(mnt, MNT_DETACH);
	unlink(node);
	rmdir(mnt);
	rmdir(dir);
out_free:
	free(en);
	return e;
}
