/* pkgstate: <root>/var/lib/rackboot/installed.json, the record of the
 * packages stage 2 installed: per package its name, version, arch, the
 * archive's sha256 (from the signed catalogue), the install time and every
 * path it created or replaced with type (file, dir, symlink, chardev,
 * blockdev, fifo), mode, size and (regular files) sha256, hashed from the
 * root after extraction, and "reboot": true when its catalogue entry says
 * a change of it needs a reboot.
 *
 * The file is read (bounded), the package's entry replaced or appended,
 * and written back atomically: a temporary file beside it, fsync, rename,
 * fsync of the directory. Owns nothing beyond one call. Never follows a
 * symlink below the root, never leaves a half-written installed.json. */
#include "agent/pkgstate.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/pkginstall.h"
#include "agent/plain.h"
#include "common/catalog.h"
#include "common/sha256.h"
#include "common/util.h"

/* mkdir -p of a relative path below dirfd, never following a symlink. */
int agent_mkdir_beneath(int dirfd, const char *path)
{
	char buf[512];
	int fd = dup(dirfd);

	if (fd < 0)
		return -errno;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *c = buf, *s; c && *c; c = s) {
		int nfd;

		s = strchr(c, '/');
		if (s)
			*s++ = '\0';
		if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST) {
			close(fd);
			return -errno;
		}
		nfd = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (nfd < 0)
			return -errno;
		fd = nfd;
	}
	return fd;
}

static int hash_file(int rootfd, const char *path, char hex[65])
{
	int fd = rb_open_beneath(rootfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t buf[65536], h[32];
	ssize_t k;
	int e = 0;

	if (fd < 0 || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		e = fd < 0 ? fd : -ENOMEM;
		goto out;
	}
	while ((k = read(fd, buf, sizeof(buf))) != 0) {
		if (k < 0) {
			if (errno == EINTR)
				continue;
			e = -errno;
			goto out;
		}
		EVP_DigestUpdate(md, buf, (size_t)k);
	}
	EVP_DigestFinal_ex(md, h, NULL);
	rb_hex(h, 32, hex);
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(md);
	return e;
}

static const char *file_type(mode_t m)
{
	if (S_ISDIR(m))
		return "dir";
	if (S_ISLNK(m))
		return "symlink";
	if (S_ISCHR(m))
		return "chardev";
	if (S_ISBLK(m))
		return "blockdev";
	if (S_ISFIFO(m))
		return "fifo";
	return "file";
}

static json_t *package_record(int rootfd, const struct img_cat_package *cat,
                              const char *const *paths, size_t n)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", cat->name, "version",
	                      cat->version, "arch", cat->arch, "sha256", cat->sha256, "installed",
	                      (json_int_t)time(NULL));
	json_t *files = json_array();

	if (!j || !files)
		goto fail;
	/* a removal or upgrade of it needs a reboot too, catalogue or not */
	if (cat->reboot && json_object_set_new(j, "reboot", json_true()) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		char path[4200], hex[65] = "";
		struct stat st;
		json_t *f;

		if (fstatat(rootfd, paths[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			goto fail;
		snprintf(path, sizeof(path), "/%s", paths[i]);
		f = json_pack("{s:s, s:s, s:i, s:I}", "path", path, "type", file_type(st.st_mode),
		              "mode", (int)(st.st_mode & 07777), "size",
		              (json_int_t)(S_ISREG(st.st_mode) ? st.st_size : 0));
		if (!f || json_array_append_new(files, f) < 0)
			goto fail;
		if (S_ISREG(st.st_mode)) {
			if (hash_file(rootfd, paths[i], hex) < 0)
				goto fail;
			json_object_set_new(f, "sha256", json_string(hex));
		}
	}
	json_object_set_new(j, "files", files);
	return j;
fail:
	json_decref(files);
	json_decref(j);
	return NULL;
}

int agent_pkg_state_load(int rootfd, json_t **ret, char *err, size_t errlen)
{
	json_error_t jerr = { .text = "too large" };
	json_t *state = NULL;
	struct stat st;
	int fd;

	fd = openat(rootfd, AGENT_PKG_STATE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			return agent_errf(err, errlen, -errno, "%s: %s", AGENT_PKG_STATE,
			                  strerror(errno));
		state = json_pack("{s:s, s:[]}", "format", "rackboot-installed/1", "packages");
		if (!state)
			return -ENOMEM;
		*ret = state;
		return 0;
	}
	/* read whole, then parsed: json_loadfd() reads one byte per read(2) */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < 64 * 1024 * 1024) {
		char *buf = malloc((size_t)st.st_size + 1);

		if (buf && (!st.st_size || rb_pread_all(fd, buf, (size_t)st.st_size, 0) == 0))
			state = json_loadb(buf, (size_t)st.st_size, JSON_REJECT_DUPLICATES, &jerr);
		else
			snprintf(jerr.text, sizeof(jerr.text), "cannot read it");
		free(buf);
	}
	close(fd);
	if (!state)
		return agent_errf(err, errlen, -EINVAL, "%s is damaged (%s): fix or remove it",
		                  AGENT_PKG_STATE, jerr.text);
	if (!json_is_array(json_object_get(state, "packages"))) {
		json_decref(state);
		return agent_errf(err, errlen, -EINVAL, "%s has no packages array",
		                  AGENT_PKG_STATE);
	}
	*ret = state;
	return 0;
}

/* Writes state as installed.json: a temporary file, fsync, rename, fsync
 * of the directory. */
static int state_write(int rootfd, const char *root, json_t *state, char *err, size_t errlen)
{
	char *text = json_dumps(state, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	int dir = agent_mkdir_beneath(rootfd, "var/lib/rackboot"), fd = -1, e = 0;

	if (!text || dir < 0) {
		e = agent_errf(err, errlen, dir < 0 ? dir : -ENOMEM, "%s/var/lib/rackboot: %s",
		               root, strerror(dir < 0 ? -dir : ENOMEM));
		goto out;
	}
	fd = openat(dir, "installed.json.tmp",
	            O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 || (e = rb_write_all(fd, text, strlen(text))) < 0 ||
	    (e = rb_write_all(fd, "\n", 1)) < 0 || fsync(fd) < 0 ||
	    renameat(dir, "installed.json.tmp", dir, "installed.json") < 0) {
		e = e < 0 ? e : -errno;
		unlinkat(dir, "installed.json.tmp", 0);
		agent_errf(err, errlen, e, "%s/%s: %s", root, AGENT_PKG_STATE, strerror(-e));
		goto out;
	}
	fsync(dir);
out:
	if (fd >= 0)
		close(fd);
	if (dir >= 0)
		close(dir);
	free(text);
	return e;
}

/* Drops name's entries from the packages array; true if there was one. */
static bool drop_entry(json_t *pkgs, const char *name)
{
	bool found = false;

	for (size_t i = json_array_size(pkgs); i-- > 0;) {
		const char *nm =
		        json_string_value(json_object_get(json_array_get(pkgs, i), "name"));

		if (nm && strcmp(nm, name) == 0) {
			json_array_remove(pkgs, i);
			found = true;
		}
	}
	return found;
}

int agent_pkg_record_in(int rootfd, const char *root, json_t *state,
                        const struct img_cat_package *cat, const char *const *paths, size_t n,
                        char *err, size_t errlen)
{
	json_t *pkgs = json_object_get(state, "packages"),
	       *rec = package_record(rootfd, cat, paths, n);
	int e;

	if (!rec)
		return agent_errf(err, errlen, -EIO, "%s: cannot list its files", cat->name);
	drop_entry(pkgs, cat->name);
	e = json_array_append_new(pkgs, rec) < 0 ? -ENOMEM : 0;
	if (e == 0)
		e = state_write(rootfd, root, state, err, errlen);
	return e;
}

/* Replaces (or adds) the package's entry in installed.json, atomically. */
int agent_pkg_record(int rootfd, const char *root, const struct img_cat_package *cat,
                     const char *const *paths, size_t n, char *err, size_t errlen)
{
	json_t *state = NULL;
	int e;

	e = agent_pkg_state_load(rootfd, &state, err, errlen);
	if (e == 0)
		e = agent_pkg_record_in(rootfd, root, state, cat, paths, n, err, errlen);
	json_decref(state);
	return e;
}

int agent_pkg_unrecord_in(int rootfd, const char *root, json_t *state, const char *name, char *err,
                          size_t errlen)
{
	if (!drop_entry(json_object_get(state, "packages"), name))
		return agent_errf(err, errlen, -ENOENT, "%s is not installed", name);
	return state_write(rootfd, root, state, err, errlen);
}

int agent_pkg_state_list(int rootfd, json_t **ret, char *err, size_t errlen)
{
	json_t *state = NULL, *out, *v;
	size_t i;
	int e;

	e = agent_pkg_state_load(rootfd, &state, err, errlen);
	if (e < 0)
		return e;
	out = json_array();
	json_array_foreach(json_object_get(state, "packages"), i, v)
	{
		json_t *n = json_object_get(v, "name"), *ver = json_object_get(v, "version");

		if (out && json_is_string(n) && json_is_string(ver) &&
		    json_array_append_new(out, json_pack("{s:O, s:O}", "name", n, "version", ver)) <
		            0) {
			json_decref(out);
			out = NULL;
		}
	}
	json_decref(state);
	if (!out)
		return -ENOMEM;
	*ret = out;
	return 0;
}
