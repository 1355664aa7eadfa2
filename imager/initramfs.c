/* The boot initramfs builder (see initramfs.h, docs/initramfs.md).
 *
 * Collects entries (host files, generated text, directories, one device
 * node) into a list, sorts it by path and writes a newc cpio through
 * libarchive's gzip or zstd filter. Shared libraries are found the way
 * ld.so would find them, without running anything: the program's ELF
 * headers give PT_INTERP, DT_NEEDED and DT_RUNPATH/RPATH (imager/elf.c),
 * and each soname is looked for in the RUNPATH/RPATH directories, then in
 * the standard directories of the interpreter's multiarch triplet, never
 * through /etc/ld.so.cache (the initramfs has none). Kernel modules and
 * their dependencies come from imager/kmod.c. Tools (--tool and the default
 * set: the programs agent/rootfs.c runs) go through the same resolver, so a
 * library the agent and a tool both need is in the image once.
 *
 * Reproducible: entries are sorted, owned by root, with one fixed mtime,
 * inode numbers by position and no gzip timestamp, so the same inputs give
 * the same bytes.
 *
 * Owns: the entry list, the temporary output file until it is renamed.
 * Never: executes a program (no ldd, cpio or depmod), trusts a size from
 * an ELF header without a bound, or leaves a partial file at the output
 * path. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/sign.h"
#include "common/util.h"
#include "elf.h"
#include "initramfs.h"
#include "kmod.h"
#include "pxe/embedded.h" /* struct rb_embedded_file only */

/* templates/initramfs/, built in by scripts/embed-files.py. */
extern const struct rb_embedded_file img_initramfs_files[];

#define MAX_ELF_SIZE  (512u << 20)
#define MAX_KEY_SIZE  (64u << 10)
#define MAX_OBJECTS   1024
#define MAX_ENTRIES   65536
#define AGENT_PATH    "usr/bin/rackboot-agent"
#define BUSYBOX_PATH  "bin/busybox"
#define TRUSTED_DIR   "etc/rackboot/trusted"
#define FIRMWARE_DIR  "lib/firmware"
#define COPY_BUF_SIZE (256u << 10)
#define MKE2FS_CONF   "/etc/mke2fs.conf"

const char *const img_initramfs_default_modules[] = {
	/* packet sockets for udhcpc (built in on most kernels) */
	"af_packet",
	/* virtual machines */
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "vmxnet3",
	/* disks */
	"nvme", "ahci", "sd_mod", "megaraid_sas", "mpt3sas",
	/* server NICs */
	"e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice", "mlx5_core", "bnxt_en", "tg3",
	"r8169", NULL
};

/* What agent/rootfs.c runs through PATH (posix_spawnp), and the Debian
 * package that has each. /init's PATH is /usr/sbin:/usr/bin:/sbin:/bin
 * and `busybox --install -s` never replaces a file that exists, so a tool
 * in /usr/sbin wins over a busybox applet of the same name. */
static const struct {
	const char *name, *package;
} default_tools[] = {
	{ "sfdisk", "fdisk" },
	{ "mkfs.vfat", "dosfstools" },
	{ "mkfs.ext4", "e2fsprogs" },
	{ "mkfs.xfs", "xfsprogs" },
};

/* Where a tool given by name, or a default one, is looked for. */
static const char *const tool_dirs[] = { "/sbin", "/usr/sbin", "/usr/bin" };
#define TOOL_DIRS_TEXT "/sbin, /usr/sbin, /usr/bin"

enum entry_kind { ENT_DIR, ENT_FILE, ENT_NODE };

struct entry {
	char *path; /* in the archive: relative, no leading '/' */
	enum entry_kind kind;
	unsigned mode; /* permission bits */
	unsigned major, minor;
	char *src;     /* ENT_FILE: host file to copy, or NULL for data */
	uint8_t *data; /* ENT_FILE: owned contents when src is NULL */
	size_t len;
};

struct fs {
	struct entry *e;
	size_t n, cap;
};

static void fs_free(struct fs *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		free(fs->e[i].path);
		free(fs->e[i].src);
		free(fs->e[i].data);
	}
	free(fs->e);
}

static struct entry *fs_find(struct fs *fs, const char *path)
{
	for (size_t i = 0; i < fs->n; i++)
		if (strcmp(fs->e[i].path, path) == 0)
			return &fs->e[i];
	return NULL;
}

static struct entry *fs_push(struct fs *fs, const char *path)
{
	struct entry *e;

	if (fs->n >= MAX_ENTRIES)
		return NULL;
	if (fs->n == fs->cap) {
		size_t nc = fs->cap ? fs->cap * 2 : 256;
		struct entry *ne = realloc(fs->e, nc * sizeof(*ne));
		if (!ne)
			return NULL;
		fs->e = ne;
		fs->cap = nc;
	}
	e = &fs->e[fs->n];
	memset(e, 0, sizeof(*e));
	e->path = strdup(path);
	if (!e->path)
		return NULL;
	fs->n++;
	return e;
}

static int fs_dir(struct fs *fs, const char *path, unsigned mode)
{
	struct entry *e = fs_find(fs, path);

	if (e)
		return e->kind == ENT_DIR ? 0 : -EEXIST;
	e = fs_push(fs, path);
	if (!e)
		return -ENOMEM;
	e->kind = ENT_DIR;
	e->mode = mode;
	return 0;
}

/* A host file at path. The same path twice is fine when it is the same
 * source (a library two programs need); a different source is a clash. */
static int fs_file(struct fs *fs, const char *path, const char *src, unsigned mode, char *err,
                   size_t errlen)
{
	struct entry *e = fs_find(fs, path);

	if (e) {
		if (e->kind == ENT_FILE && e->src && strcmp(e->src, src) == 0)
			return 0;
		return rb_errf(err, errlen, "/%s would be written twice (from %s and %s)", path,
		               e->src ? e->src : "a generated file", src);
	}
	e = fs_push(fs, path);
	if (!e || !(e->src = strdup(src)))
		return -ENOMEM;
	e->kind = ENT_FILE;
	e->mode = mode;
	return 0;
}

/* Generated contents; takes ownership of data (freed on failure too). */
static int fs_data(struct fs *fs, const char *path, uint8_t *data, size_t len, unsigned mode,
                   char *err, size_t errlen)
{
	struct entry *e = fs_find(fs, path);

	if (e) {
		free(data);
		return rb_errf(err, errlen, "/%s would be written twice (%s and a generated file)",
		               path, e->src ? e->src : "two generated files");
	}
	e = fs_push(fs, path);
	if (!e) {
		free(data);
		return -ENOMEM;
	}
	e->kind = ENT_FILE;
	e->mode = mode;
	e->data = data;
	e->len = len;
	return 0;
}

static int fs_text(struct fs *fs, const char *path, unsigned mode, char *err, size_t errlen,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int fs_text(struct fs *fs, const char *path, unsigned mode, char *err, size_t errlen,
                   const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	return fs_data(fs, path, (uint8_t *)s, (size_t)n, mode, err, errlen);
}

/* Adds every missing parent directory (0755) of every entry. */
static int fs_parents(struct fs *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		char p[PATH_MAX];
		size_t n = strlen(fs->e[i].path);
		if (n >= sizeof(p))
			return -ENAMETOOLONG;
		memcpy(p, fs->e[i].path, n + 1);
		for (char *s = strrchr(p, '/'); s; s = strrchr(p, '/')) {
			int e;
			*s = '\0';
			e = fs_dir(fs, p, 0755);
			if (e < 0)
				return e;
		}
	}
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

/* Reads a whole file (cap bytes at most). */
static int read_file(const char *path, size_t cap, uint8_t **ret, size_t *ret_len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC), e;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		e = -errno;
		close(fd);
		return e;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > cap) {
		close(fd);
		return S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	e = rb_pread_all(fd, buf, (size_t)st.st_size, 0);
	close(fd);
	if (e < 0) {
		free(buf);
		return e;
	}
	*ret = buf;
	*ret_len = (size_t)st.st_size;
	return 0;
}

/* ---- shared libraries ------------------------------------------------ */

struct object {
	char *host;   /* where it was read */
	char *origin; /* directory of its real path, for $ORIGIN */
	struct img_elf_info info;
};

struct resolver {
	struct fs *fs;
	char multiarch[64];
	uint16_t machine;
	char *interp_base; /* ld.so's soname: satisfied by the interpreter */
	char **sonames;    /* resolved */
	size_t n_sonames;
	struct object objs[MAX_OBJECTS];
	size_t n_objs;
	const struct object *main; /* the program whose closure is being built */
	size_t libs;
};

static void resolver_clear(struct resolver *r)
{
	for (size_t i = 0; i < r->n_objs; i++) {
		free(r->objs[i].host);
		free(r->objs[i].origin);
		img_elf_info_clear(&r->objs[i].info);
	}
	for (size_t i = 0; i < r->n_sonames; i++)
		free(r->sonames[i]);
	free(r->sonames);
	free(r->interp_base);
}

/* The Debian/Ubuntu multiarch triplet: from the interpreter's directory
 * when it is a triplet (/lib/x86_64-linux-gnu/ld-...), else from its name,
 * else from the machine. "" when unknown (only /lib64, /lib, ... then). */
static void derive_multiarch(const char *interp, uint16_t machine, char *out, size_t n)
{
	static const struct {
		const char *ld, *triplet;
	} by_ld[] = {
		{ "ld-linux-x86-64.so.2", "x86_64-linux-gnu" },
		{ "ld-linux-aarch64.so.1", "aarch64-linux-gnu" },
		{ "ld-linux-riscv64-lp64d.so.1", "riscv64-linux-gnu" },
		{ "ld64.so.2", "powerpc64le-linux-gnu" },
		{ "ld64.so.1", "s390x-linux-gnu" },
	};
	static const struct {
		uint16_t machine;
		const char *triplet;
	} by_machine[] = {
		{ 62, "x86_64-linux-gnu" },   { 183, "aarch64-linux-gnu" },
		{ 243, "riscv64-linux-gnu" }, { 21, "powerpc64le-linux-gnu" },
		{ 22, "s390x-linux-gnu" },
	};
	const char *base, *dir;

	out[0] = '\0';
	if (interp) {
		base = strrchr(interp, '/') + 1; /* PT_INTERP is absolute (elf.c checks) */
		for (dir = base - 1; dir > interp && dir[-1] != '/'; dir--)
			;
		if (base - 1 > dir && memmem(dir, (size_t)(base - 1 - dir), "-linux-", 7) &&
		    (size_t)(base - 1 - dir) < n) {
			memcpy(out, dir, (size_t)(base - 1 - dir));
			out[base - 1 - dir] = '\0';
			return;
		}
		for (size_t i = 0; i < RB_ARRAY_SIZE(by_ld); i++)
			if (strcmp(base, by_ld[i].ld) == 0) {
				snprintf(out, n, "%s", by_ld[i].triplet);
				return;
			}
	}
	for (size_t i = 0; i < RB_ARRAY_SIZE(by_machine); i++)
		if (by_machine[i].machine == machine) {
			snprintf(out, n, "%s", by_machine[i].triplet);
			return;
		}
}

static bool have_soname(const struct resolver *r, const char *soname)
{
	if (r->interp_base && strcmp(r->interp_base, soname) == 0)
		return true;
	for (size_t i = 0; i < r->n_sonames; i++)
		if (strcmp(r->sonames[i], soname) == 0)
			return true;
	return false;
}

/* Reads and parses a program or library; records it for its own needs. */
static int load_object(struct resolver *r, const char *host, struct object **ret, char *err,
                       size_t errlen)
{
	char real[PATH_MAX], emsg[256];
	struct object *o;
	uint8_t *buf;
	size_t len;
	int e;

	if (r->n_objs == MAX_OBJECTS)
		return rb_errf(err, errlen, "more than %d shared objects: stopping", MAX_OBJECTS);
	e = read_file(host, MAX_ELF_SIZE, &buf, &len);
	if (e == -EINVAL)
		return rb_errf(err, errlen, "not a regular file");
	if (e < 0)
		return e;
	o = &r->objs[r->n_objs];
	memset(o, 0, sizeof(*o));
	e = img_elf_parse(buf, len, &o->info, emsg, sizeof(emsg));
	free(buf);
	if (e < 0)
		return rb_errf(err, errlen, "%s", emsg);
	if (!realpath(host, real)) {
		img_elf_info_clear(&o->info);
		return -errno;
	}
	*strrchr(real, '/') = '\0';
	o->host = strdup(host);
	o->origin = strdup(real[0] ? real : "/");
	if (!o->host || !o->origin) {
		free(o->host);
		free(o->origin);
		img_elf_info_clear(&o->info);
		return -ENOMEM;
	}
	r->n_objs++;
	*ret = o;
	return 0;
}

/* Expands one RUNPATH/RPATH element; false if it cannot be used here
 * (relative, or a dynamic string token other than $ORIGIN). */
static bool expand_dir(const char *el, size_t n, const char *origin, char *out, size_t outlen)
{
	const char *rest = el;
	size_t rl = n;

	if (n >= 7 && memcmp(el, "$ORIGIN", 7) == 0) {
		rest = el + 7;
		rl = n - 7;
	} else if (n >= 9 && memcmp(el, "${ORIGIN}", 9) == 0) {
		rest = el + 9;
		rl = n - 9;
	} else {
		origin = NULL;
	}
	if (memchr(rest, '$', rl) || (!origin && (n == 0 || el[0] != '/')))
		return false;
	return snprintf(out, outlen, "%s%.*s", origin ? origin : "", (int)rl, rest) < (int)outlen;
}

/* Looks for soname in the colon list dirs; true when found (path in out). */
static bool search_list(struct resolver *r, const char *list, const char *origin,
                        const char *soname, char *out, size_t outlen, bool *ret_default)
{
	const char *p = list;

	while (p && *p) {
		const char *c = strchr(p, ':');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		char dir[PATH_MAX];
		struct stat st;

		if (expand_dir(p, n, origin, dir, sizeof(dir)) &&
		    snprintf(out, outlen, "%s/%s", dir, soname) < (int)outlen &&
		    stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
			uint8_t head[64];
			int fd = open(out, O_RDONLY | O_CLOEXEC);
			bool ok = fd >= 0 && rb_pread_all(fd, head, sizeof(head), 0) == 0 &&
			          img_elf_is_elf(head, sizeof(head)) && head[4] == 2 &&
			          (uint16_t)(head[18] | head[19] << 8) == r->machine;
			if (fd >= 0)
				close(fd);
			/* ld.so skips a library of another class or machine too. */
			if (ok) {
				*ret_default = false;
				return true;
			}
		}
		p = c ? c + 1 : NULL;
	}
	return false;
}

static int resolve_one(struct resolver *r, const struct object *o, const char *soname, char *err,
                       size_t errlen)
{
	char found[PATH_MAX], defaults[512], apath[PATH_MAX], emsg[256];
	const char *ma = r->multiarch;
	bool in_default = false, got = false;
	struct object *lib;
	int e;

	if (strchr(soname, '/') || strcmp(soname, "..") == 0 || strcmp(soname, ".") == 0)
		return rb_errf(err, errlen, "%s needs \"%s\": a path, not a library name", o->host,
		               soname);
	if (o->info.runpath) {
		got = search_list(r, o->info.runpath, o->origin, soname, found, sizeof(found),
		                  &in_default);
	} else {
		if (o->info.rpath)
			got = search_list(r, o->info.rpath, o->origin, soname, found, sizeof(found),
			                  &in_default);
		/* The program's RPATH (not RUNPATH) applies to its libraries too. */
		if (!got && r->main && r->main != o && r->main->info.rpath &&
		    !r->main->info.runpath)
			got = search_list(r, r->main->info.rpath, r->main->origin, soname, found,
			                  sizeof(found), &in_default);
	}
	if (ma[0])
		snprintf(defaults, sizeof(defaults),
		         "/lib/%s:/usr/lib/%s:/lib64:/usr/lib64:/lib:/usr/lib", ma, ma);
	else
		snprintf(defaults, sizeof(defaults), "/lib64:/usr/lib64:/lib:/usr/lib");
	if (!got) {
		got = search_list(r, defaults, NULL, soname, found, sizeof(found), &in_default);
		in_default = got;
	}
	if (!got)
		return rb_errf(err, errlen,
		               "library %s (needed by %s) not found in %s%s%s (install the "
		               "package that has it)",
		               soname, o->host, o->info.runpath ? o->info.runpath : "",
		               o->info.runpath ? ":" : "", defaults);
	/* A library from a RUNPATH directory goes to a standard directory in
	 * the image: the RUNPATH ($ORIGIN of a build tree) means nothing there. */
	if (in_default)
		snprintf(apath, sizeof(apath), "%s", found + 1);
	else
		snprintf(apath, sizeof(apath), "usr/lib%s%s/%s", ma[0] ? "/" : "", ma, soname);
	e = fs_file(r->fs, apath, found, 0755, err, errlen);
	if (e < 0)
		return e;
	{
		char **ns = realloc(r->sonames, (r->n_sonames + 1) * sizeof(char *));
		if (!ns)
			return -ENOMEM;
		r->sonames = ns;
		if (!(r->sonames[r->n_sonames] = strdup(soname)))
			return -ENOMEM;
		r->n_sonames++;
	}
	r->libs++;
	e = load_object(r, found, &lib, emsg, sizeof(emsg));
	if (e < 0)
		return rb_errf(err, errlen, "library %s (%s): %s", soname, found,
		               e == -EINVAL ? emsg : strerror(-e));
	return 0;
}

/* Adds a program at apath and everything it needs. what names it in
 * errors ("--agent", "--busybox"), hint says what to give instead of a
 * file that is not a usable ELF program. */
static int add_program(struct resolver *r, const char *host, const char *apath, const char *what,
                       const char *hint, bool allow_dynamic, char *err, size_t errlen)
{
	char emsg[512] = "";
	struct object *prog;
	size_t first = r->n_objs;
	int e;

	e = load_object(r, host, &prog, emsg, sizeof(emsg));
	if (e == -EINVAL)
		return rb_errf(err, errlen, "%s %s: %s (%s)", what, host, emsg, hint);
	if (e < 0)
		return rb_errf(err, errlen, "%s %s: %s", what, host, strerror(-e));
	e = fs_file(r->fs, apath, host, 0755, err, errlen);
	if (e < 0)
		return e;
	if (!prog->info.interp) {
		if (prog->info.n_needed)
			return rb_errf(err, errlen, "%s %s: needs libraries but has no interpreter",
			               what, host);
		return 0; /* static */
	}
	if (!allow_dynamic)
		return rb_errf(err, errlen, "%s %s is dynamically linked", what, host);
	if (r->interp_base && strcmp(strrchr(prog->info.interp, '/') + 1, r->interp_base) != 0)
		return rb_errf(err, errlen, "%s %s uses the interpreter %s, another program %s",
		               what, host, prog->info.interp, r->interp_base);
	if (!r->interp_base) {
		struct stat st;
		r->machine = prog->info.machine;
		derive_multiarch(prog->info.interp, r->machine, r->multiarch, sizeof(r->multiarch));
		if (stat(prog->info.interp, &st) < 0 || !S_ISREG(st.st_mode))
			return rb_errf(err, errlen,
			               "%s %s: its interpreter %s is not on this system", what,
			               host, prog->info.interp);
		e = fs_file(r->fs, prog->info.interp + 1, prog->info.interp, 0755, err, errlen);
		if (e < 0)
			return e;
		r->interp_base = strdup(strrchr(prog->info.interp, '/') + 1);
		if (!r->interp_base)
			return -ENOMEM;
		r->libs++;
	} else if (prog->info.machine != r->machine) {
		return rb_errf(err, errlen, "%s %s is for another machine than the agent", what,
		               host);
	}
	r->main = prog;
	/* Breadth-first over the objects this program pulled in. */
	for (size_t i = first; i < r->n_objs; i++) {
		for (size_t j = 0; j < r->objs[i].info.n_needed; j++) {
			const char *so = r->objs[i].info.needed[j];
			if (have_soname(r, so))
				continue;
			e = resolve_one(r, &r->objs[i], so, err, errlen);
			if (e < 0)
				return e;
		}
	}
	r->main = NULL;
	return 0;
}

/* ---- tools ------------------------------------------------------------ */

static void warnf(const struct img_initramfs_opts *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void warnf(const struct img_initramfs_opts *o, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!o->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o->warn(msg, o->warn_arg);
}

/* The first of tool_dirs with an executable regular file called name. */
static int find_tool(const char *name, char *out, size_t outlen)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(tool_dirs); i++) {
		struct stat st;

		if (snprintf(out, outlen, "%s/%s", tool_dirs[i], name) >= (int)outlen)
			return -ENAMETOOLONG;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

/* /sbin/x, /usr/sbin/x, /usr/local/sbin/x -> usr/sbin/x; anything else
 * -> usr/bin/x. The name is the one given, not the symlink's target:
 * mkfs.ext4 -> mke2fs must stay mkfs.ext4 (mke2fs reads its argv[0]). */
static void tool_apath(const char *host, const char *name, char *out, size_t outlen)
{
	const char *slash = strrchr(host, '/');
	bool sbin = slash && slash - host >= 4 && memcmp(slash - 4, "sbin", 4) == 0 &&
	            (slash - host == 4 || slash[-5] == '/');

	snprintf(out, outlen, "usr/%s/%s", sbin ? "sbin" : "bin", name);
}

static int add_tool(struct resolver *r, const char *host, const char *name, const char *what,
                    struct img_initramfs_stats *st, bool *want_mke2fs_conf, char *err,
                    size_t errlen)
{
	char apath[PATH_MAX];
	size_t n = strlen(st->tool_names);
	int e;

	tool_apath(host, name, apath, sizeof(apath));
	e = add_program(r, host, apath, what,
	                "a tool must be an ELF program: its libraries are read from its headers",
	                true, err, errlen);
	if (e < 0)
		return e;
	st->tools++;
	snprintf(st->tool_names + n, sizeof(st->tool_names) - n, "%s%s", n ? ", " : "", name);
	if (strcmp(name, "mke2fs") == 0 || strncmp(name, "mkfs.ext", 8) == 0)
		*want_mke2fs_conf = true;
	return 0;
}

/* --tool first (a path, or a name from tool_dirs), then the default set
 * less the names --tool gave. */
static int add_tools(struct resolver *r, const struct img_initramfs_opts *o,
                     struct img_initramfs_stats *st, bool *want_mke2fs_conf, char *err,
                     size_t errlen)
{
	char host[PATH_MAX];
	int e;

	if (o->n_tools > IMG_INITRAMFS_MAX_TOOLS)
		return rb_errf(err, errlen, "at most %d --tool options", IMG_INITRAMFS_MAX_TOOLS);
	for (size_t i = 0; i < o->n_tools; i++) {
		const char *spec = o->tools[i], *name = strrchr(spec, '/');

		name = name ? name + 1 : spec;
		if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			return rb_errf(err, errlen, "--tool %s: expected a program's path or name",
			               spec);
		for (size_t j = 0; j < i; j++) {
			const char *other = strrchr(o->tools[j], '/');
			if (strcmp(other ? other + 1 : o->tools[j], name) == 0)
				return rb_errf(err, errlen,
				               "--tool %s and --tool %s: two tools called %s",
				               o->tools[j], spec, name);
		}
		if (name != spec) {
			snprintf(host, sizeof(host), "%s", spec);
		} else if (find_tool(name, host, sizeof(host)) < 0) {
			return rb_errf(err, errlen,
			               "--tool %s: not found in " TOOL_DIRS_TEXT
			               " (give its path, or install the package that has it)",
			               spec);
		}
		e = add_tool(r, host, name, "--tool", st, want_mke2fs_conf, err, errlen);
		if (e < 0)
			return e;
	}
	for (size_t i = 0; i < RB_ARRAY_SIZE(default_tools) && !o->no_tools; i++) {
		const char *name = default_tools[i].name;
		bool given = false;

		for (size_t j = 0; j < o->n_tools && !given; j++) {
			const char *other = strrchr(o->tools[j], '/');
			given = strcmp(other ? other + 1 : o->tools[j], name) == 0;
		}
		if (given)
			continue;
		if (find_tool(name, host, sizeof(host)) < 0) {
			warnf(o,
			      "%s not found in " TOOL_DIRS_TEXT
			      ": left out (rootfs tarballs that need it fail on the node; install "
			      "the Debian package %s)",
			      name, default_tools[i].package);
			continue;
		}
		e = add_tool(r, host, name, "tool", st, want_mke2fs_conf, err, errlen);
		if (e < 0) {
			size_t n = err && errlen ? strnlen(err, errlen) : 0;
			if (n && n < errlen - 1)
				snprintf(err + n, errlen - n,
				         " (or leave the default tools out: --no-tools)");
			return e;
		}
	}
	return 0;
}

/* ---- keys, modules, extra files, generated files ---------------------- */

static int add_keys(struct fs *fs, const struct img_initramfs_opts *o, char *err, size_t errlen)
{
	if (o->n_trust == 0)
		return rb_errf(err, errlen,
		               "at least one --trust KEY.pub is required (the agent verifies "
		               "every image against these keys; make one with keygen)");
	if (o->n_trust > IMG_INITRAMFS_MAX_KEYS)
		return rb_errf(err, errlen, "at most %d --trust keys", IMG_INITRAMFS_MAX_KEYS);
	for (size_t i = 0; i < o->n_trust; i++) {
		struct rb_key *k = NULL;
		char path[64];
		uint8_t *buf;
		size_t len;
		int e = read_file(o->trust[i], MAX_KEY_SIZE, &buf, &len);

		if (e < 0)
			return rb_errf(err, errlen, "trusted key %s: %s", o->trust[i],
			               strerror(-e));
		e = rb_key_load_public(o->trust[i], &k);
		if (e < 0) {
			free(buf);
			return rb_errf(err, errlen,
			               "trusted key %s: not an Ed25519 public key (%s): give the "
			               ".pub file that keygen wrote, never the .key",
			               o->trust[i], strerror(-e));
		}
		rb_key_free(k);
		snprintf(path, sizeof(path), TRUSTED_DIR "/%zu.pub", i + 1);
		e = fs_data(fs, path, buf, len, 0644, err, errlen);
		if (e < 0)
			return e;
	}
	return 0;
}

static int add_extra_files(struct fs *fs, const struct img_initramfs_opts *o, char *err,
                           size_t errlen)
{
	for (size_t i = 0; i < o->n_files; i++) {
		const char *spec = o->files[i], *colon = strrchr(spec, ':');
		char src[PATH_MAX];
		struct stat st;

		if (!colon || colon == spec || colon[1] != '/' || !rb_path_is_safe(colon + 2) ||
		    (size_t)(colon - spec) >= sizeof(src))
			return rb_errf(err, errlen, "--file %s: expected SRC:/ABSOLUTE/DEST", spec);
		memcpy(src, spec, (size_t)(colon - spec));
		src[colon - spec] = '\0';
		if (stat(src, &st) < 0 || !S_ISREG(st.st_mode))
			return rb_errf(err, errlen, "--file %s: %s is not a readable regular file",
			               spec, src);
		int e = fs_file(fs, colon + 2, src, (st.st_mode & 0111) ? 0755 : 0644, err, errlen);
		if (e < 0)
			return e;
	}
	return 0;
}

/* Firmware the modules name, where the firmware directory has it (the
 * kernel also loads NAME.zst / NAME.xz when built to). */
static int add_firmware(struct fs *fs, const struct img_initramfs_opts *o,
                        const struct img_kmods *k, struct img_initramfs_stats *st, char *err,
                        size_t errlen)
{
	static const char *const sfx[] = { "", ".zst", ".xz" };
	int dfd = open(o->firmware_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), e = 0;

	if (dfd < 0)
		return rb_errf(err, errlen, "--firmware-dir %s: %s", o->firmware_dir,
		               strerror(errno));
	for (size_t i = 0; i < k->n_order && e == 0; i++) {
		for (size_t j = 0; j < k->order[i]->n_firmware && e == 0; j++) {
			bool got = false;
			for (size_t s = 0; s < RB_ARRAY_SIZE(sfx) && !got && e == 0; s++) {
				char rel[PATH_MAX], apath[PATH_MAX + 16], src[PATH_MAX * 2];
				struct stat sb;
				int fd;

				snprintf(rel, sizeof(rel), "%s%s", k->order[i]->firmware[j],
				         sfx[s]);
				fd = rb_open_beneath(dfd, rel, O_RDONLY);
				if (fd < 0)
					continue;
				got = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
				close(fd);
				if (!got)
					continue;
				snprintf(apath, sizeof(apath), FIRMWARE_DIR "/%s", rel);
				snprintf(src, sizeof(src), "%s/%s", o->firmware_dir, rel);
				if (!fs_find(fs, apath)) {
					e = fs_file(fs, apath, src, 0644, err, errlen);
					st->firmware++;
				}
			}
			if (!got)
				st->firmware_missing++;
		}
	}
	close(dfd);
	return e;
}

static int add_modules(struct fs *fs, const struct img_initramfs_opts *o,
                       struct img_initramfs_stats *st, char *err, size_t errlen)
{
	const char *const *names = o->modules ? o->modules : img_initramfs_default_modules;
	size_t n = o->modules ? o->n_modules : RB_ARRAY_SIZE(img_initramfs_default_modules) - 1;
	struct img_kmods *k = NULL;
	char *list = NULL, *dep = NULL;
	size_t list_len = 0, dep_len = 0;
	FILE *f = NULL;
	int e;

	e = img_kmods_open(o->kernel_dir ? o->kernel_dir : "/", o->kernel_version, o->warn,
	                   o->warn_arg, &k, err, errlen);
	if (e < 0)
		return e;
	snprintf(st->kernel_version, sizeof(st->kernel_version), "%s", k->version);
	for (size_t i = 0; i < n; i++) {
		e = img_kmods_add(k, names[i], err, errlen);
		if (e == 1) {
			st->builtin++;
		} else if (e == -ENOENT && !o->modules_explicit) {
			warnf(o, "kernel %s has no module %s: skipped", k->version, names[i]);
		} else if (e == -ENOENT) {
			rb_errf(err, errlen,
			        "kernel %s has no module %s (neither a module nor built in): "
			        "check the name with `find %s/lib/modules/%s -name '%s*'`",
			        k->version, names[i], o->kernel_dir ? o->kernel_dir : "",
			        k->version, names[i]);
			goto out;
		} else if (e < 0) {
			goto out;
		}
	}
	e = -ENOMEM;
	f = open_memstream(&list, &list_len);
	if (!f)
		goto out;
	for (size_t i = 0; i < k->n_order; i++) {
		struct img_kmod *m = k->order[i];
		char apath[PATH_MAX];

		snprintf(apath, sizeof(apath), "lib/modules/%s/%s", k->version, m->outpath);
		fprintf(f, "/%s\n", apath);
		e = fs_data(fs, apath, m->data, m->len, 0644, err, errlen);
		m->data = NULL; /* fs_data owns it now, even on failure */
		if (e < 0)
			goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		e = -ENOMEM;
		goto out;
	}
	f = NULL;
	st->modules = k->n_order;
	e = fs_data(fs, "etc/modules", (uint8_t *)list, list_len, 0644, err, errlen);
	list = NULL;
	if (e < 0)
		goto out;
	e = img_kmods_dep_text(k, &dep, &dep_len);
	if (e < 0)
		goto out;
	{
		char apath[PATH_MAX];
		snprintf(apath, sizeof(apath), "lib/modules/%s/modules.dep", k->version);
		e = fs_data(fs, apath, (uint8_t *)dep, dep_len, 0644, err, errlen);
		dep = NULL;
		if (e < 0)
			goto out;
	}
	e = fs_text(fs, "etc/rackboot/kernel-version", 0644, err, errlen, "%s\n", k->version);
	if (e < 0)
		goto out;
	if (o->firmware_dir)
		e = add_firmware(fs, o, k, st, err, errlen);
out:
	if (f)
		fclose(f);
	free(list);
	free(dep);
	img_kmods_free(k);
	return e;
}

static int add_skeleton(struct fs *fs, char *err, size_t errlen)
{
	static const struct {
		const char *path;
		unsigned mode;
	} dirs[] = {
		{ "bin", 0755 },  { "sbin", 0755 }, { "usr/bin", 0755 }, { "usr/sbin", 0755 },
		{ "dev", 0755 },  { "proc", 0555 }, { "sys", 0555 },     { "run", 0755 },
		{ "tmp", 01777 }, { "root", 0700 }, { "mnt", 0755 },     { "etc/rackboot", 0755 },
	};
	struct entry *con;
	int e;

	for (size_t i = 0; i < RB_ARRAY_SIZE(dirs); i++) {
		e = fs_dir(fs, dirs[i].path, dirs[i].mode);
		if (e < 0)
			return e;
	}
	/* The kernel opens /dev/console for init before /init mounts devtmpfs. */
	con = fs_push(fs, "dev/console");
	if (!con)
		return -ENOMEM;
	con->kind = ENT_NODE;
	con->mode = 0600;
	con->major = 5;
	con->minor = 1;
	for (const struct rb_embedded_file *t = img_initramfs_files; t->name; t++) {
		char path[128];
		uint8_t *copy = malloc(t->len ? t->len : 1);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, t->data, t->len);
		snprintf(path, sizeof(path), "%s%s",
		         strcmp(t->name, "init") == 0 ? "" : "etc/rackboot/", t->name);
		e = fs_data(fs, path, copy, t->len, 0755, err, errlen);
		if (e < 0)
			return e;
	}
	e = fs_text(fs, "etc/passwd", 0644, err, errlen, "root:x:0:0:root:/root:/bin/sh\n");
	if (e == 0)
		e = fs_text(fs, "etc/group", 0644, err, errlen, "root:x:0:\n");
	if (e == 0)
		e = fs_text(fs, "etc/hosts", 0644, err, errlen, "127.0.0.1\tlocalhost\n");
	if (e == 0)
		e = fs_text(fs, "etc/nsswitch.conf", 0644, err, errlen,
		            "passwd: files\ngroup: files\nhosts: files dns\n");
	return e;
}

/* ---- writing ---------------------------------------------------------- */

static int write_entry(struct archive *a, const struct entry *en, size_t ino, long long mtime,
                       uint8_t *buf, uint64_t *bytes, char *err, size_t errlen)
{
	struct archive_entry *ae = archive_entry_new();
	uint64_t size = 0, done = 0;
	struct stat st;
	int fd = -1, e = 0;

	if (!ae)
		return -ENOMEM;
	if (en->kind == ENT_FILE && en->src) {
		fd = open(en->src, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			e = rb_errf(err, errlen, "%s: %s", en->src,
			            fd < 0 ? strerror(errno) : "not a regular file");
			goto out;
		}
		size = (uint64_t)st.st_size;
	} else if (en->kind == ENT_FILE) {
		size = en->len;
	}
	archive_entry_set_pathname(ae, en->path);
	archive_entry_set_filetype(ae, en->kind == ENT_DIR    ? AE_IFDIR
	                               : en->kind == ENT_NODE ? AE_IFCHR
	                                                      : AE_IFREG);
	archive_entry_set_perm(ae, en->mode);
	archive_entry_set_uid(ae, 0);
	archive_entry_set_gid(ae, 0);
	archive_entry_set_mtime(ae, mtime, 0);
	archive_entry_set_ino64(ae, (la_int64_t)ino);
	archive_entry_set_dev(ae, 0);
	archive_entry_set_nlink(ae, en->kind == ENT_DIR ? 2 : 1);
	if (en->kind == ENT_NODE)
		archive_entry_set_rdev(ae, makedev(en->major, en->minor));
	archive_entry_set_size(ae, (la_int64_t)size);
	if (archive_write_header(a, ae) != ARCHIVE_OK) {
		e = rb_errf(err, errlen, "/%s: %s", en->path, archive_error_string(a));
		goto out;
	}
	if (en->kind == ENT_FILE && !en->src && size &&
	    archive_write_data(a, en->data, en->len) != (la_ssize_t)en->len) {
		e = rb_errf(err, errlen, "/%s: %s", en->path, archive_error_string(a));
		goto out;
	}
	while (fd >= 0 && done < size) {
		size_t want = (size_t)RB_MIN((uint64_t)COPY_BUF_SIZE, size - done);
		ssize_t k = pread(fd, buf, want, (off_t)done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			e = rb_errf(err, errlen, "%s: %s while copying", en->src,
			            k < 0 ? strerror(errno) : "shrank");
			goto out;
		}
		if (archive_write_data(a, buf, (size_t)k) != k) {
			e = rb_errf(err, errlen, "/%s: %s", en->path, archive_error_string(a));
			goto out;
		}
		done += (uint64_t)k;
	}
	*bytes += size;
out:
	if (fd >= 0)
		close(fd);
	archive_entry_free(ae);
	return e;
}

static int write_archive(const struct fs *fs, const struct img_initramfs_opts *o, int fd,
                         uint64_t *bytes, char *err, size_t errlen)
{
	struct archive *a = archive_write_new();
	uint8_t *buf = malloc(COPY_BUF_SIZE);
	char level[16];
	int e = 0;

	if (!a || !buf) {
		e = -ENOMEM;
		goto out;
	}
	snprintf(level, sizeof(level), "%d", o->level ? o->level : o->zstd ? 19 : 9);
	if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
	    (o->zstd ? archive_write_add_filter_zstd(a) : archive_write_add_filter_gzip(a)) !=
	            ARCHIVE_OK ||
	    archive_write_set_filter_option(a, NULL, "compression-level", level) != ARCHIVE_OK ||
	    /* No time in the gzip header: two builds must be identical. */
	    (!o->zstd &&
	     archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK) ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(a, fd) != ARCHIVE_OK) {
		e = rb_errf(err, errlen, "libarchive: %s",
		            archive_error_string(a) ? archive_error_string(a) : "setup failed");
		goto out;
	}
	for (size_t i = 0; i < fs->n && e == 0; i++)
		e = write_entry(a, &fs->e[i], i + 1, o->mtime, buf, bytes, err, errlen);
	if (e == 0 && archive_write_close(a) != ARCHIVE_OK)
		e = rb_errf(err, errlen, "writing %s: %s", o->out, archive_error_string(a));
out:
	if (a)
		archive_write_free(a);
	free(buf);
	return e;
}

static int write_out(const struct fs *fs, const struct img_initramfs_opts *o, uint64_t *bytes,
                     uint64_t *size, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	struct stat st;
	int fd, e;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", o->out) >= (int)sizeof(tmp))
		return rb_errf(err, errlen, "-o %s: path too long", o->out);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return rb_errf(err, errlen, "%s: %s", tmp, strerror(errno));
	e = write_archive(fs, o, fd, bytes, err, errlen);
	if (e == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0 || fstat(fd, &st) < 0))
		e = rb_errf(err, errlen, "%s: %s", tmp, strerror(errno));
	if (close(fd) < 0 && e == 0)
		e = rb_errf(err, errlen, "%s: %s", tmp, strerror(errno));
	if (e == 0 && rename(tmp, o->out) < 0)
		e = rb_errf(err, errlen, "renaming %s to %s: %s", tmp, o->out, strerror(errno));
	if (e < 0) {
		unlink(tmp);
		return e;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

int img_initramfs_build(const struct img_initramfs_opts *o, struct img_initramfs_stats *ret,
                        char *err, size_t errlen)
{
	struct img_initramfs_stats st = { 0 };
	struct resolver *r = calloc(1, sizeof(*r));
	struct fs fs = { 0 };
	bool want_mke2fs_conf = false;
	int e;

	if (err && errlen)
		err[0] = '\0';
	if (!r)
		return -ENOMEM;
	r->fs = &fs;
	if (!o->agent || !o->out) {
		e = rb_errf(err, errlen, "an agent binary and an output file are required");
		goto out;
	}
	/* Cheap checks first: a bad key should not wait for the modules. */
	e = add_keys(&fs, o, err, errlen);
	if (e < 0)
		goto out;
	st.keys = o->n_trust;
	e = add_program(r, o->agent, AGENT_PATH, "--agent", "give the rackboot-agent binary", true,
	                err, errlen);
	if (e < 0)
		goto out;
	e = add_program(r, o->busybox ? o->busybox : "/bin/busybox", BUSYBOX_PATH, "--busybox",
	                "give the busybox binary", true, err, errlen);
	if (e < 0)
		goto out;
	e = add_tools(r, o, &st, &want_mke2fs_conf, err, errlen);
	if (e < 0)
		goto out;
	st.libs = r->libs;
	e = add_skeleton(&fs, err, errlen);
	if (e < 0)
		goto out;
	e = o->no_modules ? fs_text(&fs, "etc/modules", 0644, err, errlen, "%s", "")
	                  : add_modules(&fs, o, &st, err, errlen);
	if (e < 0)
		goto out;
	e = add_extra_files(&fs, o, err, errlen);
	if (e < 0)
		goto out;
	/* After --file, which may give its own. mke2fs has built-in defaults
	 * when the file is absent; the host's keeps its behaviour identical. */
	if (want_mke2fs_conf && !fs_find(&fs, MKE2FS_CONF + 1)) {
		struct stat sb;
		if (stat(MKE2FS_CONF, &sb) == 0 && S_ISREG(sb.st_mode))
			e = fs_file(&fs, MKE2FS_CONF + 1, MKE2FS_CONF, 0644, err, errlen);
		if (e < 0)
			goto out;
	}
	e = fs_parents(&fs);
	if (e < 0)
		goto out;
	qsort(fs.e, fs.n, sizeof(*fs.e), cmp_entry);
	e = write_out(&fs, o, &st.bytes_in, &st.size, err, errlen);
	if (e < 0)
		goto out;
	st.entries = fs.n;
	for (size_t i = 0; i < fs.n; i++)
		st.files += fs.e[i].kind == ENT_FILE;
	if (ret)
		*ret = st;
out:
	if (e < 0 && err && errlen && !err[0])
		snprintf(err, errlen, "%s", strerror(-e));
	resolver_clear(r);
	free(r);
	fs_free(&fs);
	return e;
}

int img_initramfs_default_agent(char *buf, size_t len)
{
	static const char *const rel[] = { "rackboot-agent", "../agent/rackboot-agent" };
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n <= 0)
		return -ENOENT;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	for (size_t i = 0; i < RB_ARRAY_SIZE(rel); i++) {
		struct stat st;
		char path[PATH_MAX + 32], real[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", self, rel[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && realpath(path, real) &&
		    snprintf(buf, len, "%s", real) < (int)len)
			return 0;
	}
	return -ENOENT;
}
