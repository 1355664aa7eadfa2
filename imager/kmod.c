/* Kernel modules for the boot initramfs (see kmod.h).
 *
 * The module index comes from modules.dep when the tree has one (what
 * depmod wrote, authoritative for dependencies), else from a walk of the
 * tree plus each module's own .modinfo "depends=" (what modpost recorded
 * from the same symbol references depmod uses). modules.builtin tells a
 * module the kernel has built in from one it lacks. Every module that ends
 * up in the load order is read (below the version directory only, with
 * rb_open_beneath) and decompressed (.ko.xz/.ko.zst/.ko.gz through
 * libarchive), and its .modinfo gives soft pre-dependencies, firmware
 * names and vermagic (checked against the tree's version).
 *
 * Owns: the index, the module bytes, the version directory fd.
 * Never: executes anything (no depmod, no modprobe), follows a path from
 * modules.dep out of the version directory, or reads a module without a
 * size cap. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/util.h"
#include "elf.h"
#include "kmod.h"

#define MAX_MODULE_SIZE (256u << 20) /* mlx5_core is ~4 MiB; anything near this is wrong */
#define MAX_INDEX_SIZE  (32u << 20)  /* modules.dep, modules.builtin */
#define MAX_MODULES     100000
#define MAX_WALK_DEPTH  16
#define MAX_DEP_DEPTH   64
#define MAX_DEPS        512

static const char *const comp_suffixes[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };

static void kwarn(struct img_kmods *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kwarn(struct img_kmods *k, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!k->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	k->warn(msg, k->warn_arg);
}

/* Length of the module suffix of a file name (".ko" or ".ko.xz", ...), 0
 * if it is not a module. */
static size_t module_suffix(const char *path, size_t n)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(comp_suffixes); i++) {
		size_t sl = strlen(comp_suffixes[i]);
		if (n > sl && memcmp(path + n - sl, comp_suffixes[i], sl) == 0)
			return sl;
	}
	return 0;
}

/* The module name of a path: base name without suffix, '-' as '_'. */
static char *name_of(const char *path, size_t n)
{
	const char *base = path;
	size_t sl = module_suffix(path, n), bl;
	char *r;

	for (size_t i = 0; i < n; i++)
		if (path[i] == '/')
			base = path + i + 1;
	if (!sl)
		return NULL;
	bl = (size_t)(path + n - base) - sl;
	if (bl == 0)
		return NULL;
	r = malloc(bl + 1);
	if (!r)
		return NULL;
	for (size_t i = 0; i < bl; i++)
		r[i] = base[i] == '-' ? '_' : base[i];
	r[bl] = '\0';
	return r;
}

static char *norm_name(const char *s, size_t n)
{
	char *r = malloc(n + 1);

	if (!r)
		return NULL;
	for (size_t i = 0; i < n; i++)
		r[i] = s[i] == '-' ? '_' : s[i];
	r[n] = '\0';
	return r;
}

static int cmp_mod(const void *a, const void *b)
{
	const struct img_kmod *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->relpath, y->relpath);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_key_mod(const void *key, const void *m)
{
	return strcmp(key, ((const struct img_kmod *)m)->name);
}

static int cmp_key_str(const void *key, const void *s)
{
	return strcmp(key, *(char *const *)s);
}

static struct img_kmod *find_mod(const struct img_kmods *k, const char *name)
{
	if (k->n_mods == 0) /* bsearch() on a NULL array is undefined even for 0 */
		return NULL;
	return bsearch(name, k->mods, k->n_mods, sizeof(*k->mods), cmp_key_mod);
}

static void mod_clear(struct img_kmod *m)
{
	free(m->name);
	free(m->relpath);
	free(m->outpath);
	for (size_t i = 0; i < m->n_deps; i++)
		free(m->deps[i]);
	free(m->deps);
	for (size_t i = 0; i < m->n_softpre; i++)
		free(m->softpre[i]);
	free(m->softpre);
	for (size_t i = 0; i < m->n_firmware; i++)
		free(m->firmware[i]);
	free(m->firmware);
	free(m->data);
}

void img_kmods_free(struct img_kmods *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n_mods; i++)
		mod_clear(&k->mods[i]);
	free(k->mods);
	for (size_t i = 0; i < k->n_builtin; i++)
		free(k->builtin[i]);
	free(k->builtin);
	free(k->order);
	free(k->version);
	if (k->dirfd >= 0)
		close(k->dirfd);
	free(k);
}

static int push_str(char ***arr, size_t *n, char *s)
{
	char **na;

	if (!s)
		return -ENOMEM;
	if (*n >= MAX_DEPS) {
		free(s);
		return -E2BIG;
	}
	na = realloc(*arr, (*n + 1) * sizeof(char *));
	if (!na) {
		free(s);
		return -ENOMEM;
	}
	na[(*n)++] = s;
	*arr = na;
	return 0;
}

/* Adds an index entry for relpath (n bytes); its name is derived. */
static int index_add(struct img_kmods *k, size_t *cap, const char *relpath, size_t n,
                     struct img_kmod **ret)
{
	struct img_kmod *m;
	size_t sl = module_suffix(relpath, n);

	if (k->n_mods >= MAX_MODULES)
		return -E2BIG;
	if (k->n_mods == *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		struct img_kmod *nm = realloc(k->mods, nc * sizeof(*nm));
		if (!nm)
			return -ENOMEM;
		k->mods = nm;
		*cap = nc;
	}
	m = &k->mods[k->n_mods];
	memset(m, 0, sizeof(*m));
	m->name = name_of(relpath, n);
	m->relpath = strndup(relpath, n);
	m->outpath = strndup(relpath, n - sl + 3); /* keep ".ko" */
	if (!m->name || !m->relpath || !m->outpath) {
		mod_clear(m);
		return -ENOMEM;
	}
	k->n_mods++;
	if (ret)
		*ret = m;
	return 0;
}

/* Reads a whole small file below dirfd (cap MAX_INDEX_SIZE), NUL-terminated. */
static int read_small(int dirfd, const char *name, char **ret, size_t *ret_len)
{
	struct stat st;
	char *buf;
	int fd = rb_open_beneath(dirfd, name, O_RDONLY);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_INDEX_SIZE) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	if (rb_pread_all(fd, buf, (size_t)st.st_size, 0) < 0) {
		free(buf);
		close(fd);
		return -EIO;
	}
	close(fd);
	buf[st.st_size] = '\0';
	*ret = buf;
	*ret_len = (size_t)st.st_size;
	return 0;
}

/* Splits a whitespace-separated word list [s, end) into module names. */
static int add_dep_words(struct img_kmod *m, const char *s, const char *end)
{
	while (s < end) {
		const char *w;
		char *name;
		int e;

		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		w = s;
		while (s < end && *s != ' ' && *s != '\t')
			s++;
		if (s == w)
			break;
		if (!module_suffix(w, (size_t)(s - w)))
			return -EINVAL;
		name = name_of(w, (size_t)(s - w));
		e = push_str(&m->deps, &m->n_deps, name);
		if (e < 0)
			return e;
	}
	return 0;
}

/* modules.dep: "kernel/a/b.ko: kernel/c.ko kernel/d.ko" per line. */
static int index_dep_file(struct img_kmods *k, const char *text, size_t len, char *err,
                          size_t errlen)
{
	const char *p = text, *end = text + len;
	size_t cap = 0, lineno = 0;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon;
		struct img_kmod *m;
		char *rel;
		int e;

		if (!eol)
			eol = end;
		lineno++;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (eol == p || *p == '#') {
			p = eol + 1;
			continue;
		}
		if (!colon || !module_suffix(p, (size_t)(colon - p)))
			return rb_errf(err, errlen,
			               "modules.dep line %zu: expected \"PATH.ko: DEPS\"", lineno);
		rel = strndup(p, (size_t)(colon - p));
		if (!rel)
			return -ENOMEM;
		if (!rb_path_is_safe(rel)) {
			e = rb_errf(err, errlen, "modules.dep line %zu: unsafe path \"%s\"", lineno,
			            rel);
			free(rel);
			return e;
		}
		free(rel);
		e = index_add(k, &cap, p, (size_t)(colon - p), &m);
		if (e < 0)
			return e;
		e = add_dep_words(m, colon + 1, eol);
		if (e < 0)
			return rb_errf(err, errlen, "modules.dep line %zu: bad dependency list",
			               lineno);
		p = eol + 1;
	}
	return 0;
}

/* Walks dirfd (at relative prefix rel) for module files. */
static int walk_tree(struct img_kmods *k, size_t *cap, int dirfd, const char *rel, int depth)
{
	struct dirent *de;
	DIR *d;
	int fd, e = 0;

	if (depth > MAX_WALK_DEPTH)
		return 0;
	fd = openat(dirfd, rel[0] ? rel : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP || errno == ENOTDIR ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (e == 0 && (de = readdir(d))) {
		char path[4096];
		size_t n;

		if (de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
		    (int)sizeof(path))
			continue;
		n = strlen(path);
		if (de->d_type == DT_DIR)
			e = walk_tree(k, cap, dirfd, path, depth + 1);
		else if ((de->d_type == DT_REG || de->d_type == DT_UNKNOWN) &&
		         module_suffix(path, n))
			e = index_add(k, cap, path, n, NULL);
	}
	closedir(d);
	return e;
}

/* Among modules of one name, keeps the one depmod would pick: updates/
 * first, then extra/, then the smallest path. The array is sorted. */
static void drop_duplicates(struct img_kmods *k)
{
	size_t w = 0;

	for (size_t r = 0; r < k->n_mods; r++) {
		if (w > 0 && strcmp(k->mods[w - 1].name, k->mods[r].name) == 0) {
			struct img_kmod *keep = &k->mods[w - 1], *cand = &k->mods[r];
			int pk = strncmp(keep->relpath, "updates/", 8) == 0 ? 0
			         : strncmp(keep->relpath, "extra/", 6) == 0 ? 1
			                                                    : 2;
			int pc = strncmp(cand->relpath, "updates/", 8) == 0 ? 0
			         : strncmp(cand->relpath, "extra/", 6) == 0 ? 1
			                                                    : 2;
			if (pc < pk) {
				struct img_kmod t = *keep;
				*keep = *cand;
				*cand = t;
			}
			mod_clear(cand);
			continue;
		}
		if (w != r)
			k->mods[w] = k->mods[r];
		w++;
	}
	k->n_mods = w;
}

static int index_builtin(struct img_kmods *k)
{
	char *text = NULL, *p, *end;
	size_t len;
	int e = read_small(k->dirfd, "modules.builtin", &text, &len);

	if (e == -ENOENT)
		return 0;
	if (e < 0)
		return e;
	end = text + len;
	for (p = text; p < end;) {
		char *eol = memchr(p, '\n', (size_t)(end - p));
		char *name;
		if (!eol)
			eol = end;
		name = name_of(p, (size_t)(eol - p));
		if (name) {
			e = push_str(&k->builtin, &k->n_builtin, name);
			if (e == -E2BIG)
				e = 0; /* the cap is for dependency lists; grow past it */
			if (e < 0)
				break;
		}
		p = eol + 1;
	}
	free(text);
	if (e == 0 && k->n_builtin)
		qsort(k->builtin, k->n_builtin, sizeof(char *), cmp_str);
	return e;
}

static int pick_version(const char *root, const char *modroot, char **ret, char *err, size_t errlen)
{
	char found[8][256], list[1024] = "";
	size_t n = 0, off = 0;
	struct utsname u;
	struct dirent *de;
	DIR *d = opendir(modroot);

	if (!d)
		return rb_errf(err, errlen,
		               "%s: %s (give --kernel-dir, a root that holds lib/modules/VERSION, "
		               "or --no-modules)",
		               modroot, strerror(errno));
	while ((de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
		    !S_ISDIR(st.st_mode) || strlen(de->d_name) >= sizeof(found[0]))
			continue;
		if (n < RB_ARRAY_SIZE(found))
			memcpy(found[n], de->d_name, strlen(de->d_name) + 1);
		n++;
	}
	closedir(d);
	if (n == 1) {
		*ret = strdup(found[0]);
		return *ret ? 0 : -ENOMEM;
	}
	if (n > 1 && strcmp(root, "/") == 0 && uname(&u) == 0) {
		for (size_t i = 0; i < n && i < RB_ARRAY_SIZE(found); i++)
			if (strcmp(found[i], u.release) == 0) {
				*ret = strdup(found[i]);
				return *ret ? 0 : -ENOMEM;
			}
	}
	for (size_t i = 0; i < n && i < RB_ARRAY_SIZE(found) && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
		                        found[i]);
	if (n == 0)
		return rb_errf(err, errlen, "%s holds no kernel version directory", modroot);
	return rb_errf(err, errlen, "%s holds several kernels (%s): pick one with --kernel-version",
	               modroot, list);
}

int img_kmods_open(const char *root, const char *version, void (*warn)(const char *msg, void *arg),
                   void *warn_arg, struct img_kmods **ret, char *err, size_t errlen)
{
	struct img_kmods *k = calloc(1, sizeof(*k));
	char modroot[4096], path[4096 + 256];
	char *dep = NULL;
	size_t dep_len, cap = 0;
	int e;

	if (!k)
		return -ENOMEM;
	k->dirfd = -1;
	k->warn = warn;
	k->warn_arg = warn_arg;
	snprintf(modroot, sizeof(modroot), "%s%slib/modules", root,
	         root[0] && root[strlen(root) - 1] == '/' ? "" : "/");
	if (version) {
		if (strchr(version, '/') || strcmp(version, "..") == 0 || !version[0]) {
			e = rb_errf(err, errlen, "bad kernel version \"%s\"", version);
			goto fail;
		}
		k->version = strdup(version);
		if (!k->version) {
			e = -ENOMEM;
			goto fail;
		}
	} else {
		e = pick_version(root, modroot, &k->version, err, errlen);
		if (e < 0)
			goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", modroot, k->version);
	k->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (k->dirfd < 0) {
		e = rb_errf(err, errlen, "%s: %s (is --kernel-dir/--kernel-version right?)", path,
		            strerror(errno));
		goto fail;
	}
	e = read_small(k->dirfd, "modules.dep", &dep, &dep_len);
	if (e == 0) {
		k->have_dep_file = true;
		e = index_dep_file(k, dep, dep_len, err, errlen);
		free(dep);
	} else if (e == -ENOENT) {
		e = walk_tree(k, &cap, k->dirfd, "", 0);
		if (e < 0)
			rb_errf(err, errlen, "%s: reading the module tree: %s", path, strerror(-e));
	} else {
		rb_errf(err, errlen, "%s/modules.dep: %s", path, strerror(-e));
	}
	if (e < 0)
		goto fail;
	if (k->n_mods)
		qsort(k->mods, k->n_mods, sizeof(*k->mods), cmp_mod);
	drop_duplicates(k);
	e = index_builtin(k);
	if (e < 0) {
		rb_errf(err, errlen, "%s/modules.builtin: %s", path, strerror(-e));
		goto fail;
	}
	if (k->n_mods == 0 && k->n_builtin == 0) {
		e = rb_errf(err, errlen, "%s holds no kernel modules", path);
		goto fail;
	}
	*ret = k;
	return 0;
fail:
	img_kmods_free(k);
	return e;
}

/* Reads and, where needed, decompresses one module file. */
static int load_bytes(struct img_kmods *k, struct img_kmod *m, char *err, size_t errlen)
{
	struct archive *a = NULL;
	struct archive_entry *ent;
	size_t cap = 0, len = 0;
	uint8_t *buf = NULL;
	struct stat st;
	int fd, e = 0;

	fd = rb_open_beneath(k->dirfd, m->relpath, O_RDONLY);
	if (fd < 0)
		return rb_errf(err, errlen, "module %s: %s: %s", m->name, m->relpath,
		               strerror(-fd));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_MODULE_SIZE) {
		e = rb_errf(err, errlen, "module %s: %s: not a regular file under 256 MiB", m->name,
		            m->relpath);
		goto out;
	}
	if (strlen(m->relpath) == strlen(m->outpath)) { /* plain .ko */
		buf = malloc(st.st_size ? (size_t)st.st_size : 1);
		if (!buf) {
			e = -ENOMEM;
			goto out;
		}
		len = (size_t)st.st_size;
		if (rb_pread_all(fd, buf, len, 0) < 0) {
			e = rb_errf(err, errlen, "module %s: reading %s failed", m->name,
			            m->relpath);
			goto out;
		}
		goto done;
	}
	a = archive_read_new();
	if (!a || archive_read_support_filter_all(a) != ARCHIVE_OK ||
	    archive_read_support_format_raw(a) != ARCHIVE_OK) {
		e = -ENOMEM;
		goto out;
	}
	if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK ||
	    archive_read_next_header(a, &ent) != ARCHIVE_OK) {
		e = rb_errf(err, errlen, "module %s: %s: %s", m->name, m->relpath,
		            archive_error_string(a) ? archive_error_string(a) : "unreadable");
		goto out;
	}
	for (;;) {
		la_ssize_t r;
		if (cap - len < 65536) {
			uint8_t *nb;
			cap = cap ? cap * 2 : 1 << 20;
			if (cap > MAX_MODULE_SIZE) {
				e = rb_errf(err, errlen, "module %s: decompresses to over 256 MiB",
				            m->name);
				goto out;
			}
			nb = realloc(buf, cap);
			if (!nb) {
				e = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		r = archive_read_data(a, buf + len, cap - len);
		if (r < 0) {
			e = rb_errf(err, errlen, "module %s: decompressing %s: %s", m->name,
			            m->relpath, archive_error_string(a));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
done:
	if (!img_elf_is_elf(buf, len)) {
		e = rb_errf(err, errlen, "module %s: %s is not an ELF object", m->name, m->relpath);
		goto out;
	}
	m->data = buf;
	m->len = len;
	buf = NULL;
out:
	if (a)
		archive_read_free(a);
	free(buf);
	close(fd);
	return e;
}

struct mi_ctx {
	struct img_kmods *k;
	struct img_kmod *m;
	int e;
};

static int mi_depends(const char *v, size_t n, void *arg)
{
	struct mi_ctx *c = arg;
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		while (j < n && v[j] != ',')
			j++;
		if (j > i) {
			c->e = push_str(&c->m->deps, &c->m->n_deps, norm_name(v + i, j - i));
			if (c->e < 0)
				return 1;
		}
		i = j + 1;
	}
	return 0;
}

static int mi_softdep(const char *v, size_t n, void *arg)
{
	struct mi_ctx *c = arg;
	bool pre = false;
	size_t i = 0;

	while (i < n) {
		size_t j;
		while (i < n && v[i] == ' ')
			i++;
		j = i;
		while (j < n && v[j] != ' ')
			j++;
		if (j - i == 4 && memcmp(v + i, "pre:", 4) == 0)
			pre = true;
		else if (j - i == 5 && memcmp(v + i, "post:", 5) == 0)
			pre = false;
		else if (j > i && pre) {
			c->e = push_str(&c->m->softpre, &c->m->n_softpre, norm_name(v + i, j - i));
			if (c->e < 0)
				return 1;
		}
		i = j;
	}
	return 0;
}

static int mi_firmware(const char *v, size_t n, void *arg)
{
	struct mi_ctx *c = arg;
	char *s = strndup(v, n);

	if (s && !rb_path_is_safe(s)) {
		free(s); /* a firmware name that would leave /lib/firmware: ignore */
		return 0;
	}
	c->e = push_str(&c->m->firmware, &c->m->n_firmware, s);
	return c->e < 0 ? 1 : 0;
}

static int mi_vermagic(const char *v, size_t n, void *arg)
{
	struct mi_ctx *c = arg;
	size_t vl = strlen(c->k->version);

	if (n < vl || memcmp(v, c->k->version, vl) != 0 || (n > vl && v[vl] != ' '))
		kwarn(c->k, "module %s was built for another kernel (vermagic \"%.*s\", tree %s)",
		      c->m->name, (int)RB_MIN(n, 200), v, c->k->version);
	return 0;
}

/* Loads m and reads what its .modinfo says. */
static int load_module(struct img_kmods *k, struct img_kmod *m, char *err, size_t errlen)
{
	struct mi_ctx c = { k, m, 0 };
	size_t off, size;
	int e;

	if (m->loaded)
		return 0;
	e = load_bytes(k, m, err, errlen);
	if (e < 0)
		return e;
	m->loaded = true;
	e = img_elf_section(m->data, m->len, ".modinfo", &off, &size, NULL, 0);
	if (e == -ENOENT)
		return 0;
	if (e < 0)
		return rb_errf(err, errlen, "module %s: malformed ELF section headers", m->name);
	if (!k->have_dep_file)
		img_elf_modinfo_each((const char *)m->data + off, size, "depends", mi_depends, &c);
	if (c.e == 0)
		img_elf_modinfo_each((const char *)m->data + off, size, "softdep", mi_softdep, &c);
	if (c.e == 0)
		img_elf_modinfo_each((const char *)m->data + off, size, "firmware", mi_firmware,
		                     &c);
	if (c.e == 0)
		img_elf_modinfo_each((const char *)m->data + off, size, "vermagic", mi_vermagic,
		                     &c);
	if (c.e < 0)
		return rb_errf(err, errlen, "module %s: %s", m->name,
		               c.e == -E2BIG ? "too many dependencies" : strerror(-c.e));
	return 0;
}

static bool is_builtin(const struct img_kmods *k, const char *name)
{
	return k->n_builtin &&
	       bsearch(name, k->builtin, k->n_builtin, sizeof(char *), cmp_key_str) != NULL;
}

static int visit(struct img_kmods *k, struct img_kmod *m, const char *from, int depth, char *err,
                 size_t errlen)
{
	struct img_kmod **no;
	int e;

	if (m->state == 2)
		return 0;
	if (m->state == 1 || depth > MAX_DEP_DEPTH)
		return rb_errf(err, errlen, "module dependency cycle through %s and %s", m->name,
		               from ? from : "?");
	m->state = 1;
	e = load_module(k, m, err, errlen);
	if (e < 0)
		return e;
	for (size_t i = 0; i < m->n_softpre; i++) {
		struct img_kmod *d = find_mod(k, m->softpre[i]);
		/* Soft: a pre-dependency the tree lacks (or builds in) is fine. */
		if (d && d->state != 1 && (e = visit(k, d, m->name, depth + 1, err, errlen)) < 0)
			return e;
	}
	for (size_t i = 0; i < m->n_deps; i++) {
		struct img_kmod *d = find_mod(k, m->deps[i]);
		if (!d) {
			if (is_builtin(k, m->deps[i]))
				continue;
			return rb_errf(err, errlen,
			               "module %s depends on %s, which kernel %s does not have "
			               "(a broken module tree: reinstall the kernel package)",
			               m->name, m->deps[i], k->version);
		}
		e = visit(k, d, m->name, depth + 1, err, errlen);
		if (e < 0)
			return e;
	}
	no = realloc(k->order, (k->n_order + 1) * sizeof(*no));
	if (!no)
		return -ENOMEM;
	k->order = no;
	k->order[k->n_order++] = m;
	m->state = 2;
	return 0;
}

int img_kmods_add(struct img_kmods *k, const char *name, char *err, size_t errlen)
{
	char *n = norm_name(name, strlen(name));
	struct img_kmod *m;
	int e;

	if (!n)
		return -ENOMEM;
	m = find_mod(k, n);
	if (!m) {
		e = is_builtin(k, n) ? 1 : -ENOENT;
		if (e < 0)
			rb_errf(err, errlen, "kernel %s has no module %s", k->version, name);
		free(n);
		return e;
	}
	free(n);
	return visit(k, m, NULL, 0, err, errlen);
}

/* Collects the transitive dependencies of m in post-order (each after
 * its own dependencies), as indices into k->mods. */
static int dep_closure(const struct img_kmods *k, const struct img_kmod *m, bool *seen,
                       size_t *post, size_t *n_post, int depth)
{
	if (depth > MAX_DEP_DEPTH)
		return -ELOOP;
	for (size_t i = 0; i < m->n_deps; i++) {
		const struct img_kmod *d = find_mod(k, m->deps[i]);
		size_t idx;
		if (!d)
			continue;
		idx = (size_t)(d - k->mods);
		if (seen[idx])
			continue;
		seen[idx] = true;
		if (dep_closure(k, d, seen, post, n_post, depth + 1) < 0)
			return -ELOOP;
		post[(*n_post)++] = idx;
	}
	return 0;
}

int img_kmods_dep_text(const struct img_kmods *k, char **ret, size_t *ret_len)
{
	size_t n = k->n_mods ? k->n_mods : 1, n_post, len = 0;
	bool *seen = calloc(n, sizeof(bool));
	size_t *post = calloc(n, sizeof(size_t));
	char *buf = NULL;
	FILE *f = seen && post ? open_memstream(&buf, &len) : NULL;
	int e = 0;

	if (!f) {
		free(seen);
		free(post);
		return -ENOMEM;
	}
	/* depmod's convention: modprobe loads the listed dependencies from the
	 * last to the first, so they are written in reverse load order. */
	for (size_t i = 0; i < k->n_order && e == 0; i++) {
		memset(seen, 0, n * sizeof(bool));
		n_post = 0;
		e = dep_closure(k, k->order[i], seen, post, &n_post, 0);
		fprintf(f, "%s:", k->order[i]->outpath);
		while (n_post > 0)
			fprintf(f, " %s", k->mods[post[--n_post]].outpath);
		fputc('\n', f);
	}
	if (fclose(f) != 0 && e == 0)
		e = -ENOMEM;
	free(seen);
	free(post);
	if (e < 0) {
		free(buf);
		return e;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}
