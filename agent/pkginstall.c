/* pkginstall: stage 2, package archives of the signed catalogue installed
 * into a freshly imaged root directory.
 *
 * The catalogue and its detached signature are fetched (size-capped) and
 * the signature checked against the trusted keys before anything of it is
 * parsed. Packages are installed in the order given (the resolver, agent/
 * pkgresolve.c, decides it), each all or nothing:
 *
 *  1. The archive streams in (agent/stream.c: hashed as it arrives) into a
 *     temporary file under <root>/var/lib/rackboot/tmp, never more bytes
 *     than the catalogue's size; only after its size and SHA-256 match the
 *     signed entry is anything read from it.
 *  2. Plan (nothing written to the root yet): the first member must be
 *     .rackboot/meta.json naming the catalogue's name and version, then
 *     the scripts (bounded), then the payload. Every payload member is
 *     checked: a safe relative path, not under .rackboot/, only
 *     directories, regular files, symlinks and hard links to earlier
 *     regular files of the same payload, never through a symlink (of the
 *     root or of the payload). Setuid/setgid bits, character and block
 *     devices and FIFOs only where the package's signed catalogue entry
 *     allows them ("allow": setuid, devices, fifos; devices only when the
 *     agent runs as root), sockets never: anything else refuses the whole
 *     package before a byte is written. Each path and each missing parent
 *     directory is noted with what is in the root there now.
 *  3. preinst runs (agent/pkgscript.c: chroot into the root, /bin/sh, a
 *     time limit, output captured). Then each existing file the payload replaces is renamed
 *     into a per-transaction backup directory inside the root, and the
 *     payload is extracted with libarchive archive_write_disk (SECURE_
 *     NODOTDOT, SECURE_SYMLINKS, SECURE_NOABSOLUTEPATHS, perms, owner,
 *     xattrs) from inside the root (fchdir). Then postinst runs.
 *  4. On any failure from 3 on, every path the package created is removed
 *     (children first), the backups are renamed back and the modes and
 *     owners of existing directories it touched restored: the root holds
 *     the same files with the same contents as before.
 *  5. On success the backups are deleted and <root>/var/lib/rackboot/
 *     installed.json is rewritten atomically (agent/pkgstate.c) (tmp, fsync, rename) with the
 *     package's entry: name, version, arch, archive sha256, install time,
 *     and every path with its type, mode, size and (regular files) sha256.
 *
 * Owns the temporary archive, the backup directory, the script child.
 * Never extracts a byte of an archive that did not verify, never writes
 * outside the root, never runs a script outside a chroot. */
#include "agent/pkginstall.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/fetch.h"
#include "agent/pkgscript.h"
#include "agent/pkgtxn.h"
#include "agent/pkgstate.h"
#include "agent/plain.h"
#include "agent/stream.h"
#include "common/catalog.h"
#include "common/sha256.h"
#include "common/sign.h"
#include "common/util.h"

#define URL_MAX  4096
#define SIG_MAX  4096
#define MAX_PUBS 8
#define META     ".rackboot/meta.json"
#define SCRIPTS  ".rackboot/scripts/"

static const char *const phases[] = { "preinst", "postinst", "prerm", "postrm" };

/* ---- pure helpers ----------------------------------------------------------------- */

int agent_pkg_spec_parse(const char *spec, char ret_name[65], char ret_version[65])
{
	const char *eq = strchr(spec, '=');
	char n[65];

	if (!eq || (size_t)(eq - spec) >= sizeof(n))
		return -EINVAL;
	memcpy(n, spec, (size_t)(eq - spec));
	n[eq - spec] = '\0';
	if (!img_name_is_valid(n) || !img_pkg_version_is_valid(eq + 1))
		return -EINVAL;
	snprintf(ret_name, 65, "%s", n);
	snprintf(ret_version, 65, "%s", eq + 1);
	return 0;
}

const char *agent_pkg_arch_of_machine(const char *machine)
{
	if (strcmp(machine, "x86_64") == 0)
		return "amd64";
	if (strcmp(machine, "aarch64") == 0)
		return "arm64";
	if (strlen(machine) == 4 && machine[0] == 'i' && strcmp(machine + 2, "86") == 0 &&
	    machine[1] >= '3' && machine[1] <= '6')
		return "i386";
	return machine;
}

const struct img_cat_package *agent_pkg_find(const struct img_catalog *c, const char *name,
                                             const char *version, const char *arch)
{
	const struct img_cat_package *all = NULL;

	for (size_t i = 0; i < c->n_packages; i++) {
		const struct img_cat_package *p = &c->packages[i];

		if (strcmp(p->name, name) != 0 || strcmp(p->version, version) != 0)
			continue;
		if (strcmp(p->arch, arch) == 0)
			return p;
		if (strcmp(p->arch, "all") == 0)
			all = p;
	}
	return all;
}

bool agent_pkg_member_ok(char *path)
{
	size_t n;

	while (path[0] == '.' && path[1] == '/') {
		size_t k = 2;

		while (path[k] == '/')
			k++;
		memmove(path, path + k, strlen(path + k) + 1);
	}
	n = strlen(path);
	while (n > 0 && path[n - 1] == '/')
		path[--n] = '\0';
	if (n == 0 || !rb_path_is_safe(path))
		return false;
	return !(strncmp(path, ".rackboot", 9) == 0 && (path[9] == '\0' || path[9] == '/'));
}

/* ---- the plan ------------------------------------------------------------------------- */

enum { T_DIR = 1, T_REG, T_LNK, T_HARD, T_DEV /* char, block, fifo: allowed ones */ };

struct pent {
	char *path;
	int type;       /* T_*; 0: a parent directory implied by the payload */
	bool existed;   /* something was in the root there */
	struct stat st; /* what was there */
	char *target;   /* hard link: the payload path it links to */
	char *tmp;      /* non-directories: the staged name beside path */
};

struct pkg {
	const struct agent_pkg_opts *o;
	const struct img_cat_package *cat;
	int rootfd, tmpfd;
	char *script[4];
	size_t script_len[4];
	struct pent *e;
	size_t n, cap;
	struct agent_txn *txn;
	json_t *state;           /* installed.json as it was before this package */
	json_t *old;             /* its entry being replaced or removed (in state), or NULL */
	const char *old_version; /* of old, NULL: a new package */
	char **owned;            /* sorted paths ("/...") of the other packages (in state) */
	size_t n_owned;
};

static void pkg_clear(struct pkg *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->e[i].path);
		free(p->e[i].target);
		free(p->e[i].tmp);
	}
	free(p->e);
	p->e = NULL;
	p->n = p->cap = 0;
	for (size_t i = 0; i < 4; i++) {
		free(p->script[i]);
		p->script[i] = NULL;
	}
	agent_txn_free(p->txn);
	p->txn = NULL;
	p->old = NULL; /* p->state stays: the next package of the command uses it */
	p->old_version = NULL;
	free(p->owned);
	p->owned = NULL;
	p->n_owned = 0;
}

static int plan_add(struct pkg *p, const char *path, int type, const char *target)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct pent *e = realloc(p->e, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		p->e = e;
		p->cap = cap;
	}
	memset(&p->e[p->n], 0, sizeof(p->e[0]));
	p->e[p->n].path = strdup(path);
	p->e[p->n].type = type;
	p->e[p->n].target = target ? strdup(target) : NULL;
	if (!p->e[p->n].path || (target && !p->e[p->n].target)) {
		free(p->e[p->n].path);
		free(p->e[p->n].target);
		return -ENOMEM;
	}
	p->n++;
	return 0;
}

static int pent_cmp(const void *a, const void *b)
{
	const struct pent *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	/* an explicit member sorts before an implied directory of the same path */
	return c ? c : (x->type == 0) - (y->type == 0);
}

static int pent_path_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pent *)a)->path, ((const struct pent *)b)->path);
}

/* After plan_check() deduplicated the sorted entries. */
static struct pent *plan_find(struct pkg *p, const char *path)
{
	struct pent key = { .path = (char *)path };

	return bsearch(&key, p->e, p->n, sizeof(*p->e), pent_path_cmp);
}

/* Sorts, drops duplicate paths (the last explicit member wins in the
 * archive; for the plan one entry is enough) and looks at the root. */
static int plan_check(struct pkg *p, char *err, size_t errlen)
{
	const char *twice = NULL;
	size_t k = 0;

	qsort(p->e, p->n, sizeof(*p->e), pent_cmp);
	for (size_t i = 0; i < p->n; i++) {
		if (k > 0 && strcmp(p->e[k - 1].path, p->e[i].path) == 0) {
			if (p->e[i].type && p->e[k - 1].type && p->e[i].type != p->e[k - 1].type)
				twice = p->e[k - 1].path;
			free(p->e[i].path);
			free(p->e[i].target);
			continue;
		}
		p->e[k++] = p->e[i];
	}
	p->n = k;
	if (twice)
		return agent_errf(err, errlen, -EINVAL,
		                  "%s: payload member %s appears twice with different types: "
		                  "refused",
		                  p->cat->name, twice);
	for (size_t i = 0; i < p->n; i++) {
		struct pent *e = &p->e[i];
		char *slash = strrchr(e->path, '/');

		if (slash) {
			/* the parent sorts earlier and was checked already */
			char parent[4096];
			struct pent *par;

			snprintf(parent, sizeof(parent), "%.*s", (int)(slash - e->path), e->path);
			par = plan_find(p, parent);
			if (!par || (par->type != 0 && par->type != T_DIR) ||
			    (par->existed && !S_ISDIR(par->st.st_mode)))
				return agent_errf(
				        err, errlen, -EINVAL,
				        "%s: payload member %s lies below something that is "
				        "not a directory (a symlink or file of the package or "
				        "of the root): refused",
				        p->cat->name, e->path);
		}
		if (fstatat(p->rootfd, e->path, &e->st, AT_SYMLINK_NOFOLLOW) == 0) {
			e->existed = true;
			if (e->type == 0 && !S_ISDIR(e->st.st_mode))
				return agent_errf(
				        err, errlen, -EINVAL,
				        "%s: the package has files below %s/%s, which is a "
				        "symlink or file in the root: refused",
				        p->cat->name, p->o->root, e->path);
			if (S_ISDIR(e->st.st_mode) != (e->type == 0 || e->type == T_DIR))
				return agent_errf(
				        err, errlen, -EEXIST,
				        "%s: %s/%s is a %s in the root and a %s in the package: "
				        "remove it first",
				        p->cat->name, p->o->root, e->path,
				        S_ISDIR(e->st.st_mode) ? "directory" : "non-directory",
				        S_ISDIR(e->st.st_mode) ? "non-directory" : "directory");
		} else if (errno != ENOENT) {
			return agent_errf(err, errlen, -errno, "%s: %s/%s: %s", p->cat->name,
			                  p->o->root, e->path, strerror(errno));
		}
		if (e->type == T_HARD) {
			struct pent *t = plan_find(p, e->target);

			if (!t || t->type != T_REG)
				return agent_errf(err, errlen, -EINVAL,
				                  "%s: hard link %s -> %s does not point to a "
				                  "regular file of the package: refused",
				                  p->cat->name, e->path, e->target);
		}
	}
	return 0;
}

/* Adds path and each of its parents (implied directories). */
static int plan_member(struct pkg *p, const char *path, int type, const char *target)
{
	char buf[4096];
	int e;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *s = strchr(buf, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		e = plan_add(p, buf, 0, NULL);
		*s = '/';
		if (e < 0)
			return e;
	}
	return plan_add(p, path, type, target);
}

static int read_member(struct archive *a, struct archive_entry *ent, size_t max, char **ret,
                       size_t *ret_len)
{
	la_int64_t size = archive_entry_size(ent);
	char *buf;
	size_t got = 0;

	if (size < 0 || (uint64_t)size > max)
		return -EFBIG;
	buf = malloc((size_t)size + 1);
	if (!buf)
		return -ENOMEM;
	while (got < (size_t)size) {
		la_ssize_t k = archive_read_data(a, buf + got, (size_t)size - got);

		if (k <= 0) {
			free(buf);
			return -EIO;
		}
		got += (size_t)k;
	}
	buf[got] = '\0';
	*ret = buf;
	*ret_len = got;
	return 0;
}

static struct archive *open_archive(int fd)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
	if (lseek(fd, 0, SEEK_SET) < 0 || archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
	    archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK) {
		archive_read_free(a);
		return NULL;
	}
	return a;
}

static int check_meta(struct pkg *p, const char *data, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *nm, *v;
	int e = 0;

	if (!j || !json_is_object(j))
		e = agent_errf(err, errlen, -EINVAL, "%s: %s: %s", p->cat->name, META,
		               j ? "not an object" : jerr.text);
	nm = json_string_value(json_object_get(j, "name"));
	v = json_string_value(json_object_get(j, "version"));
	if (e == 0 &&
	    (!nm || !v || strcmp(nm, p->cat->name) != 0 || strcmp(v, p->cat->version) != 0))
		e = agent_errf(err, errlen, -EINVAL,
		               "%s %s: %s names %s %s: the archive is not the package the "
		               "catalogue lists",
		               p->cat->name, p->cat->version, META, nm ? nm : "(none)",
		               v ? v : "(none)");
	json_decref(j);
	return e;
}

/* What the refused kind of member is called in a message. */
static const char *allow_noun(const char *word)
{
	if (!strcmp(word, "setuid"))
		return "setuid or setgid files";
	if (!strcmp(word, "devices"))
		return "device nodes";
	return "FIFOs";
}

/* Setuid/setgid bits, device nodes and FIFOs only where the signed
 * catalogue entry allows them (device nodes only as root); sockets and
 * unknown types never. */
static int member_allowed(struct pkg *p, struct archive_entry *ent, char *err, size_t errlen)
{
	const char *shown = archive_entry_pathname(ent) ?: "", *word = NULL;
	mode_t mode = archive_entry_mode(ent);
	char why[64];
	int r;

	if (archive_entry_hardlink(ent))
		mode = (mode & 07777) | AE_IFREG; /* the link itself; its target is checked */
	r = img_pkg_mode_check((uint32_t)mode, p->cat->allow, &word, why, sizeof(why));
	if (r == -EINVAL)
		return agent_errf(err, errlen, -EPERM,
		                  "%s %s: payload member %s %s: no package may install one: "
		                  "refused",
		                  p->cat->name, p->cat->version, shown, why);
	if (r < 0)
		return agent_errf(err, errlen, -EPERM,
		                  "%s %s: payload member %s %s; the catalogue does not allow %s "
		                  "for this package: refused (if it needs them, build it with "
		                  "rackboot-image pkg build --allow %s and index it again)",
		                  p->cat->name, p->cat->version, shown, why, allow_noun(word),
		                  word);
	if ((S_ISCHR(mode) || S_ISBLK(mode)) && geteuid() != 0)
		return agent_errf(err, errlen, -EPERM,
		                  "%s %s: payload member %s is a %s device: creating device "
		                  "nodes needs root (the agent runs as uid %u): refused",
		                  p->cat->name, p->cat->version, shown,
		                  S_ISCHR(mode) ? "character" : "block", (unsigned)geteuid());
	return 0;
}

/* Pass 1 over the verified archive: meta, scripts, the plan. */
static int plan_read(struct pkg *p, int fd, char *err, size_t errlen)
{
	struct archive *a = open_archive(fd);
	struct archive_entry *ent;
	char *meta = NULL;
	size_t mlen = 0;
	bool first = true;
	int r, e = 0;

	if (!a)
		return agent_errf(err, errlen, -ENOMEM, "%s: cannot open the archive",
		                  p->cat->name);
	while (e == 0 && (r = archive_read_next_header(a, &ent)) == ARCHIVE_OK) {
		char path[4096];
		const char *hl = archive_entry_hardlink(ent);
		mode_t ft = archive_entry_filetype(ent);

		snprintf(path, sizeof(path), "%s", archive_entry_pathname(ent) ?: "");
		if (first) {
			first = false;
			if (strcmp(path, META) != 0 || ft != AE_IFREG ||
			    read_member(a, ent, AGENT_PKG_META_MAX, &meta, &mlen) < 0) {
				e = agent_errf(
				        err, errlen, -EINVAL,
				        "%s: first member is not a readable %s (build packages "
				        "with rackboot-image pkg build)",
				        p->cat->name, META);
				break;
			}
			e = check_meta(p, meta, mlen, err, errlen);
			continue;
		}
		if (strncmp(path, SCRIPTS, strlen(SCRIPTS)) == 0) {
			size_t i;

			for (i = 0; i < 4 && strcmp(path + strlen(SCRIPTS), phases[i]) != 0; i++)
				;
			if (i == 4 || ft != AE_IFREG || p->script[i] ||
			    read_member(a, ent, AGENT_PKG_SCRIPT_MAX, &p->script[i],
			                &p->script_len[i]) < 0)
				e = agent_errf(err, errlen, -EINVAL,
				               "%s: %s: unknown, repeated or unreadable script",
				               p->cat->name, path);
			continue;
		}
		if (!agent_pkg_member_ok(path)) {
			e = agent_errf(err, errlen, -EINVAL,
			               "%s: payload member \"%s\" is absolute, has \"..\" or lies "
			               "under .rackboot/: refused",
			               p->cat->name, archive_entry_pathname(ent));
			break;
		}
		e = member_allowed(p, ent, err, errlen);
		if (e < 0)
			break;
		if (hl) {
			char t[4096];

			snprintf(t, sizeof(t), "%s", hl);
			if (!agent_pkg_member_ok(t)) {
				e = agent_errf(
				        err, errlen, -EINVAL,
				        "%s: hard link %s -> \"%s\" points outside the package: "
				        "refused",
				        p->cat->name, path, hl);
				break;
			}
			e = plan_member(p, path, T_HARD, t);
		} else if (ft == AE_IFDIR || ft == AE_IFREG || ft == AE_IFLNK) {
			e = plan_member(p, path,
			                ft == AE_IFDIR   ? T_DIR
			                : ft == AE_IFREG ? T_REG
			                                 : T_LNK,
			                NULL);
		} else if (ft == AE_IFCHR || ft == AE_IFBLK || ft == AE_IFIFO) {
			e = plan_member(p, path, T_DEV, NULL); /* member_allowed() let it through */
		} else {
			e = agent_errf(err, errlen, -EINVAL,
			               "%s: payload member %s is a device, fifo or socket: refused",
			               p->cat->name, path);
		}
	}
	if (e == 0 && r != ARCHIVE_EOF)
		e = agent_errf(err, errlen, -EIO, "%s: reading the archive: %s", p->cat->name,
		               archive_error_string(a));
	if (e == 0 && first)
		e = agent_errf(err, errlen, -EINVAL, "%s: empty archive", p->cat->name);
	archive_read_free(a);
	free(meta);
	return e < 0 ? e : plan_check(p, err, errlen);
}

/* ---- the root: directories, download, scripts (agent/pkgscript.c)
 * ----------------------------------------- */

static int download(struct pkg *p, const char *name, char *err, size_t errlen)
{
	struct agent_stream_opts so = { .size = p->cat->size,
		                        .timeout_s = p->o->timeout_s,
		                        .retries = p->o->retries ? p->o->retries : 4,
		                        .hosts = p->o->hosts };
	struct agent_stream *s = NULL;
	char url[URL_MAX];
	uint64_t got = 0;
	int fd, e;

	if (agent_url_join(p->o->repo, p->cat->path, url, sizeof(url)) < 0)
		return agent_errf(err, errlen, -ENAMETOOLONG, "repository URL too long");
	if (rb_unhex(p->cat->sha256, so.sha256, 32) < 0)
		return agent_errf(err, errlen, -EINVAL, "%s: bad sha256 in the catalogue",
		                  p->cat->name);
	so.url = url;
	fd = openat(p->tmpfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return agent_errf(err, errlen, -errno, "%s/%s/%s: %s", p->o->root, AGENT_PKG_TMP,
		                  name, strerror(errno));
	e = agent_stream_new(&so, &s);
	if (e < 0) {
		agent_errf(err, errlen, e, "%s: %s", url, strerror(-e));
		goto fail;
	}
	for (;;) {
		const void *buf;
		ssize_t k = agent_stream_read(s, &buf);

		if (k <= 0)
			break;
		got += (uint64_t)k;
		if (got > p->cat->size) /* the stream checks this too; bound the disk anyway */
			break;
		e = rb_write_all(fd, buf, (size_t)k);
		if (e < 0) {
			agent_errf(err, errlen, e, "%s/%s: writing the download: %s", p->o->root,
			           AGENT_PKG_TMP, strerror(-e));
			goto fail;
		}
	}
	e = agent_stream_finish(s, err, errlen);
	agent_stream_free(s);
	s = NULL;
	if (e < 0)
		goto fail;
	return fd;
fail:
	agent_stream_free(s);
	close(fd);
	unlinkat(p->tmpfd, name, 0);
	return e;
}

/* Runs script phase (if the package has it) as /bin/sh inside the root. */
static int run_script(struct pkg *p, int phase, char *err, size_t errlen)
{
	unsigned limit =
	        p->o->script_timeout_s ? p->o->script_timeout_s : AGENT_PKG_SCRIPT_TIMEOUT_S;
	char name[160], inroot[256], out[AGENT_PKG_OUTPUT_MAX + 1];
	char en[128], ev[128], ep[64], eo[128];
	char *const env[] = { en, ev, ep, p->old_version ? eo : NULL, NULL };
	int fd, status = 0, e;
	bool timed_out = false;

	if (!p->script[phase])
		return 0;
	snprintf(name, sizeof(name), "%s.%s", p->cat->name, phases[phase]);
	snprintf(inroot, sizeof(inroot), "/%s/%s", AGENT_PKG_TMP, name);
	snprintf(en, sizeof(en), "RACKBOOT_PKG_NAME=%s", p->cat->name);
	snprintf(ev, sizeof(ev), "RACKBOOT_PKG_VERSION=%s", p->cat->version);
	snprintf(ep, sizeof(ep), "RACKBOOT_PKG_PHASE=%s", phases[phase]);
	snprintf(eo, sizeof(eo), "RACKBOOT_PKG_OLD_VERSION=%s",
	         p->old_version ? p->old_version : "");
	fd = openat(p->tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0700);
	if (fd < 0)
		return agent_errf(err, errlen, -errno, "%s: writing %s: %s", p->cat->name, name,
		                  strerror(errno));
	e = rb_write_all(fd, p->script[phase], p->script_len[phase]);
	close(fd);
	if (e == 0)
		e = agent_chroot_sh(p->rootfd, inroot, phases[phase], env, limit, &status,
		                    &timed_out, out, sizeof(out));
	unlinkat(p->tmpfd, name, 0);
	if (e < 0)
		return agent_errf(err, errlen, e, "%s %s: cannot run %s: %s", p->cat->name,
		                  p->cat->version, phases[phase], strerror(-e));
	if (timed_out)
		return agent_errf(err, errlen, -ETIMEDOUT,
		                  "%s %s: %s script ran over its limit of %u s and was killed; "
		                  "output: %s",
		                  p->cat->name, p->cat->version, phases[phase], limit, out);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return agent_errf(err, errlen, -ECHILD,
		                  "%s %s: %s script failed (%s %d); output: %s", p->cat->name,
		                  p->cat->version, phases[phase],
		                  WIFEXITED(status) ? "exit status" : "signal",
		                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), out);
	return 0;
}

/* ---- stage, swap, roll back (agent/pkgtxn.c) ------------------------------------------ */

static int strptr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The other installed packages' paths, sorted, for "is it still needed". */
static int load_owned(struct pkg *p, json_t *state, const char *name)
{
	json_t *pk, *f;
	size_t i, j, n = 0;

	json_array_foreach(
	        json_object_get(state, "packages"), i,
	        pk) if (strcmp(json_string_value(json_object_get(pk, "name")) ?: "", name) != 0)
	        n += json_array_size(json_object_get(pk, "files"));
	p->owned = calloc(n ? n : 1, sizeof(*p->owned));
	if (!p->owned)
		return -ENOMEM;
	json_array_foreach(json_object_get(state, "packages"), i, pk)
	{
		if (!strcmp(json_string_value(json_object_get(pk, "name")) ?: "", name))
			continue;
		json_array_foreach(json_object_get(pk, "files"), j, f)
		{
			const char *path = json_string_value(json_object_get(f, "path"));

			if (path && p->n_owned < n)
				p->owned[p->n_owned++] = (char *)path; /* borrowed from p->state */
		}
	}
	qsort(p->owned, p->n_owned, sizeof(*p->owned), strptr_cmp);
	return 0;
}

static bool owned_by_other(const struct pkg *p, const char *slash_path)
{
	return bsearch(&slash_path, p->owned, p->n_owned, sizeof(*p->owned), strptr_cmp) != NULL;
}

/* installed.json, the entry of name (p->old, NULL when it is not
 * installed) and the other packages' paths. */
static int load_old(struct pkg *p, const char *name, char *err, size_t errlen)
{
	json_t *pk;
	size_t i;
	int e;

	if (!p->state && (e = agent_pkg_state_load(p->rootfd, &p->state, err, errlen)) < 0)
		return e;
	json_array_foreach(
	        json_object_get(p->state, "packages"), i,
	        pk) if (!strcmp(json_string_value(json_object_get(pk, "name")) ?: "", name))
	{
		p->old = pk;
		p->old_version = json_string_value(json_object_get(pk, "version"));
	}
	return load_owned(p, p->state, name);
}

/* After a failure: the in-memory installed.json may hold what the disk
 * does not; the next package reads it again. */
static void drop_state(struct pkg *p)
{
	json_decref(p->state);
	p->state = NULL;
}

static bool is_installed(const struct pkg *p)
{
	return p->old_version != NULL;
}

/* Pass 2: the payload onto disk from inside the root, every file, link
 * and symlink under its staged name beside its place (directories as
 * they are). Nothing the root had is replaced yet. */
static int extract(struct pkg *p, int fd, char *err, size_t errlen)
{
	struct archive *a = open_archive(fd), *w = archive_write_disk_new();
	struct archive_entry *ent;
	int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r, e = 0;

	if (!a || !w || cwd < 0) {
		e = agent_errf(err, errlen, -ENOMEM, "%s: cannot open the archive", p->cat->name);
		goto out;
	}
	archive_write_disk_set_options(
	        w, ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
	                   ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_PERM |
	                   ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_TIME);
	archive_write_disk_set_standard_lookup(w);
	if (fchdir(p->rootfd) < 0) {
		e = agent_errf(err, errlen, -errno, "%s: %s", p->o->root, strerror(errno));
		goto out;
	}
	while ((r = archive_read_next_header(a, &ent)) == ARCHIVE_OK) {
		char path[4096], shown[4096];
		struct pent *x;

		snprintf(shown, sizeof(shown), "%s", archive_entry_pathname(ent) ?: "");
		if (strncmp(shown, ".rackboot/", 10) == 0)
			continue; /* meta and scripts: read in pass 1 (the payload has none) */
		snprintf(path, sizeof(path), "%s", shown);
		if (!agent_pkg_member_ok(path) || !(x = plan_find(p, path))) {
			e = agent_errf(err, errlen, -EIO, "%s: %s changed between the two reads",
			               p->cat->name, shown);
			goto out;
		}
		if (x->tmp) {
			archive_entry_set_pathname(ent, x->tmp);
			if (archive_entry_hardlink(ent)) {
				char t[4096];
				struct pent *tx;

				snprintf(t, sizeof(t), "%s", archive_entry_hardlink(ent));
				tx = agent_pkg_member_ok(t) ? plan_find(p, t) : NULL;
				if (!tx || !tx->tmp) {
					e = agent_errf(err, errlen, -EIO,
					               "%s: extracting %s: bad link", p->cat->name,
					               shown);
					goto out;
				}
				archive_entry_set_hardlink(ent, tx->tmp);
			}
			if ((e = agent_txn_staged(p->txn, x->tmp)) < 0)
				goto out;
		}
		r = archive_write_header(w, ent);
		if (r == ARCHIVE_OK && archive_entry_size(ent) > 0) {
			const void *buf;
			size_t len;
			la_int64_t off;

			while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK)
				if (archive_write_data_block(w, buf, len, off) != ARCHIVE_OK) {
					r = ARCHIVE_FATAL;
					break;
				}
			if (r == ARCHIVE_EOF)
				r = ARCHIVE_OK;
		}
		if (r == ARCHIVE_OK)
			r = archive_write_finish_entry(w);
		if (r != ARCHIVE_OK) {
			e = agent_errf(err, errlen, -EIO, "%s: extracting %s: %s", p->cat->name, shown,
			               archive_error_string(w) ?: archive_error_string(a) ?: "failed");
			goto out;
		}
	}
	if (r != ARCHIVE_EOF)
		e = agent_errf(err, errlen, -EIO, "%s: reading the archive: %s", p->cat->name,
		               archive_error_string(a));
	else if (archive_write_close(w) != ARCHIVE_OK)
		e = agent_errf(err, errlen, -EIO, "%s: finishing the extraction: %s", p->cat->name,
		               archive_error_string(w));
out:
	if (cwd >= 0) {
		if (fchdir(cwd) < 0 && e == 0)
			e = -errno;
		close(cwd);
	}
	archive_write_free(w);
	archive_read_free(a);
	return e;
}

/* Names the staged files and logs the directories before extraction:
 * created ones are removed on rollback, existing ones get their mode and
 * owner back. */
static int prepare(struct pkg *p, char *err, size_t errlen)
{
	int e;

	for (size_t i = 0; i < p->n; i++) {
		struct pent *x = &p->e[i];
		char tmp[4200];

		if (x->type == 0 || x->type == T_DIR) {
			e = x->existed ? agent_txn_dir_meta(p->txn, x->path, &x->st)
			               : agent_txn_created_dir(p->txn, x->path);
		} else {
			e = agent_txn_name(p->txn, x->path, "new", tmp, sizeof(tmp));
			if (e == 0 && !(x->tmp = strdup(tmp)))
				e = -ENOMEM;
		}
		if (e < 0)
			return agent_errf(err, errlen, e, "%s: %s: %s", p->cat->name, x->path,
			                  strerror(-e));
	}
	return 0;
}

/* Every staged file renamed over its place (the old one kept beside it). */
static int swap_in(struct pkg *p, char *err, size_t errlen)
{
	for (size_t i = 0; i < p->n; i++) {
		int e;

		if (!p->e[i].tmp)
			continue;
		e = agent_txn_swap(p->txn, p->e[i].tmp, p->e[i].path);
		if (e < 0)
			return agent_errf(err, errlen, e, "%s: putting %s/%s in place: %s",
			                  p->cat->name, p->o->root, p->e[i].path, strerror(-e));
	}
	return 0;
}

/* An upgrade: files of the old version the new one lacks (and no other
 * package lists) go aside now, their directories at commit when empty. */
static int drop_obsolete(struct pkg *p, char *err, size_t errlen)
{
	json_t *f;
	size_t i;

	if (!is_installed(p))
		return 0;
	json_array_foreach(json_object_get(p->old, "files"), i, f)
	{
		const char *path = json_string_value(json_object_get(f, "path"));
		const char *type = json_string_value(json_object_get(f, "type"));
		int e;

		if (!path || path[0] != '/' || !rb_path_is_safe(path + 1) ||
		    plan_find(p, path + 1) || owned_by_other(p, path))
			continue;
		if (type && !strcmp(type, "dir"))
			e = agent_txn_rmdir_on_commit(p->txn, path + 1);
		else
			e = agent_txn_move_aside(p->txn, path + 1);
		if (e < 0 && e != -ENOENT)
			return agent_errf(err, errlen, e, "%s: removing %s of %s %s: %s",
			                  p->cat->name, path, p->cat->name, p->old_version,
			                  strerror(-e));
	}
	return 0;
}

/* installed.json gets every path the package created or replaced
 * (directories that were there before belong to the root). */
static int record(struct pkg *p, char *err, size_t errlen)
{
	const char **paths = calloc(p->n ? p->n : 1, sizeof(*paths));
	size_t n = 0;
	int e;

	if (!paths)
		return agent_errf(err, errlen, -ENOMEM, "out of memory");
	for (size_t i = 0; i < p->n; i++)
		if (!p->e[i].existed || !S_ISDIR(p->e[i].st.st_mode))
			paths[n++] = p->e[i].path;
	e = agent_pkg_record_in(p->rootfd, p->o->root, p->state, p->cat, paths, n, err, errlen);
	free(paths);
	return e;
}

/* prerm and postrm kept in var/lib/rackboot/info/NAME.PHASE for removal,
 * through the transaction (the old version's come back on rollback). */
static int save_scripts(struct pkg *p, char *err, size_t errlen)
{
	int dfd = agent_mkdir_beneath(p->rootfd, AGENT_PKG_INFO);

	if (dfd < 0)
		return agent_errf(err, errlen, dfd, "%s/%s: %s", p->o->root, AGENT_PKG_INFO,
		                  strerror(-dfd));
	close(dfd);
	for (int ph = 2; ph < 4; ph++) {
		char path[300], tmp[400];
		int fd, e;

		snprintf(path, sizeof(path), "%s/%s.%s", AGENT_PKG_INFO, p->cat->name, phases[ph]);
		if (!p->script[ph]) {
			e = agent_txn_move_aside(p->txn, path);
			if (e < 0 && e != -ENOENT)
				return agent_errf(err, errlen, e, "%s: %s", path, strerror(-e));
			continue;
		}
		if ((e = agent_txn_name(p->txn, path, "new", tmp, sizeof(tmp))) < 0 ||
		    (e = agent_txn_staged(p->txn, tmp)) < 0)
			return agent_errf(err, errlen, e, "%s: %s", path, strerror(-e));
		fd = openat(p->rootfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		            0700);
		if (fd < 0)
			return agent_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		e = rb_write_all(fd, p->script[ph], p->script_len[ph]);
		close(fd);
		if (e == 0)
			e = agent_txn_swap(p->txn, tmp, path);
		if (e < 0)
			return agent_errf(err, errlen, e, "%s: %s", path, strerror(-e));
	}
	return 0;
}

/* ---- one package, the catalogue, the whole list ------------------------------------------------
 */

static int install_one(struct pkg *p, char *err, size_t errlen)
{
	char dl[128];
	int fd, e, r;

	snprintf(dl, sizeof(dl), "dl-%ld-%s.tar.zst", (long)getpid(), p->cat->name);
	unlinkat(p->tmpfd, dl, 0);
	e = load_old(p, p->cat->name, err, errlen);
	if (e < 0)
		return e;
	fd = download(p, dl, err, errlen);
	if (fd < 0)
		return fd;
	e = plan_read(p, fd, err, errlen);
	if (e == 0)
		e = agent_txn_new(p->rootfd, &p->txn);
	if (e == 0)
		e = prepare(p, err, errlen);
	if (e == 0)
		e = run_script(p, 0, err, errlen);
	if (e == 0) {
		e = extract(p, fd, err, errlen);
		if (e == 0)
			e = swap_in(p, err, errlen);
		if (e == 0)
			e = drop_obsolete(p, err, errlen);
		if (e == 0)
			e = run_script(p, 1, err, errlen);
		if (e == 0)
			e = save_scripts(p, err, errlen);
		if (e == 0)
			e = record(p, err, errlen);
		if (e == 0) {
			agent_txn_commit(p->txn);
		} else {
			drop_state(p);
			r = agent_txn_rollback(p->txn);
			if (r < 0) {
				size_t n = strlen(err);

				snprintf(err + n, errlen - n,
				         "; rolling back left some paths (%s: a script created "
				         "files "
				         "in the package's directories?)",
				         strerror(-r));
			}
		}
	}
	close(fd);
	unlinkat(p->tmpfd, dl, 0);
	return e;
}

int agent_pkg_fetch_catalog(const struct agent_pkg_opts *o, struct img_catalog **ret, char *err,
                            size_t errlen)
{
	struct agent_fetch_opts fo = { .timeout_s = o->timeout_s ? o->timeout_s : 30,
		                       .retries = o->retries ? o->retries : 4,
		                       .parallel = 1,
		                       .hosts = o->hosts };
	char url[URL_MAX], surl[URL_MAX + 8], perr[256];
	char *data = NULL, *sig = NULL;
	size_t len = 0, slen = 0;
	int e;

	if (!agent_url_is_http(o->repo))
		return agent_errf(err, errlen, -EPROTO,
		                  "%s: only http:// and https:// repositories", o->repo);
	if (agent_url_join(o->repo, "catalog.json", url, sizeof(url)) < 0)
		return agent_errf(err, errlen, -ENAMETOOLONG, "repository URL too long");
	snprintf(surl, sizeof(surl), "%s.sig", url);
	e = agent_fetch_small(url, IMG_CATALOG_MAX_SIZE, &fo, &data, &len, NULL, err, errlen);
	if (e == 0)
		e = agent_fetch_small(surl, SIG_MAX, &fo, &sig, &slen, NULL, err, errlen);
	if (e < 0)
		goto out;
	/* the signature first: nothing of an unverified catalogue is parsed */
	e = rb_verify(o->pubs, o->n_pubs, data, len, sig, slen);
	if (e < 0) {
		e = agent_errf(err, errlen, e == -EINVAL ? -EINVAL : -EBADMSG,
		               "%s: %s: the catalogue was changed after it was signed, or signed "
		               "with a key this agent does not trust",
		               surl,
		               e == -EINVAL ? "malformed signature" : "signature does not verify");
		goto out;
	}
	e = img_catalog_parse(data, len, ret, perr, sizeof(perr));
	if (e < 0)
		agent_errf(err, errlen, e, "%s: %s", url, perr);
out:
	free(data);
	free(sig);
	return e;
}

int agent_pkg_install(const struct agent_pkg_opts *o, const char *const *specs, size_t n, char *err,
                      size_t errlen)
{
	struct img_catalog *c = NULL;
	int e;

	for (size_t i = 0; i < n; i++) {
		char nm[65], v[65];

		if (agent_pkg_spec_parse(specs[i], nm, v) < 0)
			return agent_errf(err, errlen, -EINVAL, "\"%s\": expected NAME=VERSION",
			                  specs[i]);
	}
	e = agent_pkg_fetch_catalog(o, &c, err, errlen);
	if (e == 0)
		e = agent_pkg_install_cat(o, c, specs, n, err, errlen);
	img_catalog_free(c);
	return e;
}

int agent_pkg_install_cat(const struct agent_pkg_opts *o, const struct img_catalog *c,
                          const char *const *specs, size_t n, char *err, size_t errlen)
{
	struct pkg p = { .o = o, .rootfd = -1, .tmpfd = -1 };
	struct utsname u;
	const char *arch = o->arch;
	int e = 0;

	if (!arch) {
		if (uname(&u) < 0)
			return agent_errf(err, errlen, -errno, "uname: %s", strerror(errno));
		arch = agent_pkg_arch_of_machine(u.machine);
	}
	for (size_t i = 0; i < n; i++) {
		char nm[65], v[65];

		if (agent_pkg_spec_parse(specs[i], nm, v) < 0)
			return agent_errf(err, errlen, -EINVAL, "\"%s\": expected NAME=VERSION",
			                  specs[i]);
	}
	p.rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p.rootfd < 0)
		return agent_errf(err, errlen, -errno, "%s: %s", o->root, strerror(errno));
	/* every package must be there before the first one is installed */
	for (size_t i = 0; i < n; i++) {
		char nm[65], v[65];
		const struct img_cat_package *cp;

		agent_pkg_spec_parse(specs[i], nm, v);
		cp = agent_pkg_find(c, nm, v, arch);
		if (!cp || !rb_path_is_safe(cp->path) || strncmp(cp->path, "pkgs/", 5) != 0) {
			e = agent_errf(err, errlen, -ENOENT,
			               "%s %s: no package for arch %s (or all) in the catalogue",
			               nm, v, arch);
			goto out;
		}
	}
	p.tmpfd = agent_mkdir_beneath(p.rootfd, AGENT_PKG_TMP);
	if (p.tmpfd < 0) {
		e = agent_errf(err, errlen, p.tmpfd, "%s/%s: %s", o->root, AGENT_PKG_TMP,
		               strerror(-p.tmpfd));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char nm[65], v[65];

		agent_pkg_spec_parse(specs[i], nm, v);
		p.cat = agent_pkg_find(c, nm, v, arch);
		if (o->verbose)
			fprintf(stderr, "installing %s %s (%s)\n", nm, v, p.cat->arch);
		e = install_one(&p, err, errlen);
		pkg_clear(&p);
		if (e < 0)
			goto out;
	}
out:
	pkg_clear(&p);
	drop_state(&p);
	if (p.tmpfd >= 0)
		close(p.tmpfd);
	close(p.rootfd);
	return e;
}

/* ---- removal ----------------------------------------------------------------------------- */

/* A script kept in info/ for removal (absent: NULL). */
static int load_info_script(struct pkg *p, int phase, char *err, size_t errlen)
{
	char path[300];
	struct stat st;
	int fd, r;

	snprintf(path, sizeof(path), "%s/%s.%s", AGENT_PKG_INFO, p->cat->name, phases[phase]);
	fd = rb_open_beneath(p->rootfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -ENOENT)
		return 0;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > AGENT_PKG_SCRIPT_MAX) {
		if (fd >= 0)
			close(fd);
		return agent_errf(err, errlen, -EINVAL, "%s/%s: not a readable script", p->o->root,
		                  path);
	}
	p->script[phase] = malloc((size_t)st.st_size + 1);
	if (!p->script[phase]) {
		close(fd);
		return -ENOMEM;
	}
	p->script_len[phase] = (size_t)st.st_size;
	r = st.st_size ? rb_pread_all(fd, p->script[phase], (size_t)st.st_size, 0) : 0;
	close(fd);
	if (r < 0)
		return agent_errf(err, errlen, r, "%s/%s: %s", p->o->root, path, strerror(-r));
	return 0;
}

/* prerm, every path of the package moved aside (those another package
 * lists stay; directories go at commit when empty), postrm, its entry
 * dropped from installed.json, then commit; any failure undoes it all. */
static int remove_one(struct pkg *p, const char *name, char *err, size_t errlen)
{
	struct img_cat_package c = { 0 };
	json_t *f;
	size_t i;
	int e, r;

	e = load_old(p, name, err, errlen);
	if (e < 0)
		return e;
	if (!p->old)
		return agent_errf(err, errlen, -ENOENT, "%s is not installed", name);
	snprintf(c.name, sizeof(c.name), "%s", name);
	snprintf(c.version, sizeof(c.version), "%s", p->old_version ? p->old_version : "");
	snprintf(c.arch, sizeof(c.arch), "%s",
	         json_string_value(json_object_get(p->old, "arch")) ?: "");
	p->cat = &c;
	p->old_version = NULL; /* not an upgrade: no RACKBOOT_PKG_OLD_VERSION */
	if ((e = load_info_script(p, 2, err, errlen)) < 0 ||
	    (e = load_info_script(p, 3, err, errlen)) < 0 ||
	    (e = agent_txn_new(p->rootfd, &p->txn)) < 0)
		goto out;
	e = run_script(p, 2, err, errlen);
	for (i = json_array_size(json_object_get(p->old, "files")); e == 0 && i-- > 0;) {
		const char *path, *type;

		f = json_array_get(json_object_get(p->old, "files"), i);
		path = json_string_value(json_object_get(f, "path"));
		type = json_string_value(json_object_get(f, "type"));
		if (!path || path[0] != '/' || !rb_path_is_safe(path + 1) ||
		    owned_by_other(p, path))
			continue;
		if (type && !strcmp(type, "dir")) {
			e = agent_txn_rmdir_on_commit(p->txn, path + 1);
		} else {
			e = agent_txn_move_aside(p->txn, path + 1);
			e = e == -ENOENT ? 0 : e;
		}
		if (e < 0)
			agent_errf(err, errlen, e, "%s %s: removing %s: %s", c.name, c.version,
			           path, strerror(-e));
	}
	if (e == 0)
		e = run_script(p, 3, err, errlen);
	for (int ph = 2; e == 0 && ph < 4; ph++) {
		char path[300];

		snprintf(path, sizeof(path), "%s/%s.%s", AGENT_PKG_INFO, name, phases[ph]);
		e = agent_txn_move_aside(p->txn, path);
		e = e == -ENOENT ? 0 : e;
	}
	if (e == 0)
		e = agent_pkg_unrecord_in(p->rootfd, p->o->root, p->state, name, err, errlen);
	if (e == 0) {
		agent_txn_commit(p->txn);
	} else {
		drop_state(p);
		r = agent_txn_rollback(p->txn);
		if (r < 0) {
			size_t n = strlen(err);

			snprintf(err + n, errlen - n, "; rolling back left some paths (%s)",
			         strerror(-r));
		}
	}
out:
	p->cat = NULL;
	return e;
}

int agent_pkg_remove(const struct agent_pkg_opts *o, const char *const *names, size_t n, char *err,
                     size_t errlen)
{
	struct pkg p = { .o = o, .rootfd = -1, .tmpfd = -1 };
	int e = 0;

	p.rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p.rootfd < 0)
		return agent_errf(err, errlen, -errno, "%s: %s", o->root, strerror(errno));
	p.tmpfd = agent_mkdir_beneath(p.rootfd, AGENT_PKG_TMP);
	if (p.tmpfd < 0) {
		e = agent_errf(err, errlen, p.tmpfd, "%s/%s: %s", o->root, AGENT_PKG_TMP,
		               strerror(-p.tmpfd));
		goto out;
	}
	for (size_t i = 0; i < n && e == 0; i++) {
		if (!img_name_is_valid(names[i])) {
			e = agent_errf(err, errlen, -EINVAL, "\"%s\": not a package name",
			               names[i]);
			break;
		}
		if (o->verbose)
			fprintf(stderr, "removing %s\n", names[i]);
		e = remove_one(&p, names[i], err, errlen);
		pkg_clear(&p);
	}
out:
	pkg_clear(&p);
	drop_state(&p);
	if (p.tmpfd >= 0)
		close(p.tmpfd);
	close(p.rootfd);
	return e;
}

/* ---- the command
 * ----------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("usage: rackboot-agent pkg-install --repo URL --pub KEYFILE [--pub KEYFILE...]\n"
	      "                                  --root DIR [--arch A] [--script-timeout-s N]\n"
	      "                                  [--timeout-s N] [--retries N]\n"
	      "                                  [--allow-host HOST[:PORT]...] [-q] "
	      "NAME=VERSION...\n"
	      "Installs packages of the signed catalogue into DIR, in the order given, each\n"
	      "all or nothing (a failed package leaves DIR as it was); records them in\n"
	      "DIR/var/lib/rackboot/installed.json. Scripts run chrooted into DIR with its\n"
	      "/bin/sh.\n"
	      "  --arch A              the node's architecture (default from uname)\n"
	      "  --script-timeout-s N  limit of each script (default 300)\n"
	      "  --allow-host H        another host the repository may redirect to\n"
	      "                        (repeatable; without a port: any port)\n"
	      "Exit: 0 installed, 1 failure (reason on stderr), 2 usage.\n",
	      f);
}

int agent_cmd_pkg_install(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "pub", required_argument, NULL, 'p' },
		{ "root", required_argument, NULL, 'R' },
		{ "arch", required_argument, NULL, 'a' },
		{ "script-timeout-s", required_argument, NULL, 'S' },
		{ "timeout-s", required_argument, NULL, 'T' },
		{ "retries", required_argument, NULL, 'N' },
		{ "allow-host", required_argument, NULL, 'A' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_pkg_opts o = { .verbose = true };
	struct rb_key *keys[MAX_PUBS];
	const char *pubs[MAX_PUBS], *allow[AGENT_HOSTS_MAX];
	struct agent_hosts hosts;
	size_t n_pubs = 0, n_keys = 0, n_allow = 0;
	char err[4096];
	long long v;
	int c, e, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			o.repo = optarg;
			break;
		case 'p':
			if (n_pubs == MAX_PUBS) {
				fprintf(stderr, "rackboot-agent pkg-install: at most %d --pub\n",
				        MAX_PUBS);
				return 2;
			}
			pubs[n_pubs++] = optarg;
			break;
		case 'R':
			o.root = optarg;
			break;
		case 'a':
			if (!img_name_is_valid(optarg) || strlen(optarg) > 32) {
				fputs("rackboot-agent pkg-install: --arch: [A-Za-z0-9._+-]{1,32}\n",
				      stderr);
				return 2;
			}
			o.arch = optarg;
			break;
		case 'S':
		case 'T':
		case 'N':
			if (rb_strtonum(optarg, 1, c == 'N' ? 100 : 86400, &v) < 0) {
				fprintf(stderr,
				        "rackboot-agent pkg-install: %s: expected a number\n",
				        c == 'S'   ? "--script-timeout-s"
				        : c == 'T' ? "--timeout-s"
				                   : "--retries");
				return 2;
			}
			if (c == 'S')
				o.script_timeout_s = (unsigned)v;
			else if (c == 'T')
				o.timeout_s = (unsigned)v;
			else
				o.retries = (unsigned)v;
			break;
		case 'A':
			if (n_allow == AGENT_HOSTS_MAX - 1) {
				fprintf(stderr,
				        "rackboot-agent pkg-install: at most %d --allow-host\n",
				        AGENT_HOSTS_MAX - 1);
				return 2;
			}
			allow[n_allow++] = optarg;
			break;
		case 'q':
			o.verbose = false;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind == argc || !o.repo || !n_pubs || !o.root) {
		usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		char nm[65], ver[65];

		if (agent_pkg_spec_parse(argv[i], nm, ver) < 0) {
			fprintf(stderr,
			        "rackboot-agent pkg-install: \"%s\": expected NAME=VERSION, each "
			        "[A-Za-z0-9._+-]{1,64}\n",
			        argv[i]);
			return 2;
		}
	}
	if (agent_hosts_build(&hosts, o.repo, allow, n_allow, AGENT_HOSTS_HINT_CMD, err,
	                      sizeof(err)) < 0) {
		fprintf(stderr, "rackboot-agent pkg-install: %s\n", err);
		return 2;
	}
	o.hosts = &hosts;
	e = rb_keys_load_public((const char *const *)pubs, n_pubs, keys, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "rackboot-agent pkg-install: %s\n", err);
		goto out;
	}
	n_keys = n_pubs;
	o.pubs = (const struct rb_key *const *)keys;
	o.n_pubs = n_keys;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("rackboot-agent pkg-install: libcurl initialisation failed\n", stderr);
		goto out;
	}
	e = agent_pkg_install(&o, (const char *const *)argv + optind, (size_t)(argc - optind), err,
	                      sizeof(err));
	if (e < 0) {
		fprintf(stderr, "rackboot-agent pkg-install: failed: %s\n", err);
	} else {
		printf("installed %d package(s) into %s\n", argc - optind, o.root);
		rc = 0;
	}
	curl_global_cleanup();
out:
	for (size_t k = 0; k < n_keys; k++)
		rb_key_free(keys[k]);
	return rc;
}

int agent_cmd_pkg_remove(int argc, char **argv)
{
	struct agent_pkg_opts o = { .verbose = true };
	char err[4096];
	int c, i;

	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'R' },
		{ "script-timeout-s", required_argument, NULL, 'S' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long long v;

	optind = 1;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'R':
			o.root = optarg;
			break;
		case 'S':
			if (rb_strtonum(optarg, 1, 86400, &v) < 0)
				goto usage;
			o.script_timeout_s = (unsigned)v;
			break;
		case 'q':
			o.verbose = false;
			break;
		case 'h':
			puts("usage: rackboot-agent pkg-remove --root DIR [--script-timeout-s N] "
			     "[-q] "
			     "NAME...\n"
			     "Removes installed packages from DIR, each all or nothing: its prerm, "
			     "its\n"
			     "files (those no other package lists), its postrm, its installed.json "
			     "entry.\n"
			     "Exit: 0 removed, 1 failure (reason on stderr), 2 usage.");
			return 0;
		default:
			goto usage;
		}
	}
	if (optind == argc || !o.root)
		goto usage;
	for (i = optind; i < argc; i++)
		if (!img_name_is_valid(argv[i]))
			goto usage;
	if (agent_pkg_remove(&o, (const char *const *)argv + optind, (size_t)(argc - optind), err,
	                     sizeof(err)) < 0) {
		fprintf(stderr, "rackboot-agent pkg-remove: failed: %s\n", err);
		return 1;
	}
	printf("removed %d package(s) from %s\n", argc - optind, o.root);
	return 0;
usage:
	fputs("usage: rackboot-agent pkg-remove --root DIR [--script-timeout-s N] [-q] NAME...\n",
	      stderr);
	return 2;
}
