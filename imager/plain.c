/* Input formats: what build/capture accept, and plain images for register.
 *
 * Detection is by magic (common/imgformat.c), never by file name alone:
 * qcow2, VMDK, VHD, VHDX and VDI are refused with the conversion command,
 * also when they hide inside gzip/xz/zstd (libarchive decompresses the
 * first 4 KiB to look). The file name only decides between a compressed
 * raw disk and a compressed tar when the magic cannot (a tar inside gzip is
 * found by libarchive's tar detection too). Nothing is written to the
 * repository before the input is accepted. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/imgformat.h"
#include "common/sha256.h"
#include "common/util.h"
#include "plain.h"

static ssize_t pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t k = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

/* Detects the head and (for fixed VHD) tail of fd. */
static int detect_fd(int fd, const char **ret_name, bool *ret_refused)
{
	uint8_t head[IMG_DETECT_HEAD], tail[512];
	struct stat st;
	ssize_t n;
	const char *tname;

	n = pread_full(fd, head, sizeof(head), 0);
	if (n < 0)
		return (int)n;
	img_detect_format(head, (size_t)n, ret_name, ret_refused);
	if (*ret_refused)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 512 &&
	    pread_full(fd, tail, 512, st.st_size - 512) == 512 &&
	    img_detect_tail(tail, 512, &tname)) {
		*ret_name = tname;
		*ret_refused = true;
	}
	return 0;
}

static void refuse_msg(const char *name, char *err, size_t errlen)
{
	const char *adv = img_format_advice(name);

	snprintf(err, errlen, "%s", adv ? adv : "unsupported image format");
}

int img_check_raw_input(int fd, char *err, size_t errlen)
{
	const char *name;
	bool refused;
	int e = detect_fd(fd, &name, &refused);

	if (e < 0) {
		snprintf(err, errlen, "reading the image: %s", strerror(-e));
		return e;
	}
	if (refused) {
		refuse_msg(name, err, errlen);
		return -EINVAL;
	}
	if (strcmp(name, "gzip") == 0 || strcmp(name, "xz") == 0 || strcmp(name, "zstd") == 0 ||
	    strcmp(name, "bzip2") == 0 || strcmp(name, "tar") == 0) {
		snprintf(err, errlen,
		         "%s input is not a raw disk image: decompress it first (e.g. zstd -d, xz "
		         "-d, "
		         "gunzip), or publish it as it is with: rackboot-image register",
		         name);
		return -EINVAL;
	}
	return 0;
}

/* Looks inside a compressed file: the first 4 KiB after decompression.
 * A disk image that starts with zeros reads to libarchive's tar reader as
 * an empty tar archive (a zero block ends one): then it is looked at again
 * as raw data. */
static int inner_detect(const char *path, const char **ret_name, bool *ret_refused, bool *ret_tar)
{
	struct archive *a = NULL;
	struct archive_entry *ent;
	uint8_t head[IMG_DETECT_HEAD];
	la_ssize_t n = 0;
	int e = -EINVAL, r = ARCHIVE_FATAL;

	for (int pass = 0; pass < 2 && r != ARCHIVE_OK; pass++) {
		if (a)
			archive_read_free(a);
		a = archive_read_new();
		if (!a)
			return -ENOMEM;
		archive_read_support_filter_all(a);
		if (pass == 0)
			archive_read_support_format_tar(a);
		archive_read_support_format_raw(a);
		r = archive_read_open_filename(a, path, 65536);
		if (r == ARCHIVE_OK)
			r = archive_read_next_header(a, &ent);
		if (r != ARCHIVE_EOF)
			break;
	}
	if (r != ARCHIVE_OK)
		goto out;
	*ret_tar = archive_format(a) != ARCHIVE_FORMAT_RAW;
	/* libarchive peels every layer (filter_all), the agent only the one
	 * the kind names: a second compression would reach the disk as it
	 * is. archive_filter_count() counts the "none" reader too. */
	if (archive_filter_count(a) > 2) {
		/* filter 0 is the innermost; a static name: a is freed below */
		switch (archive_filter_code(a, 0)) {
		case ARCHIVE_FILTER_GZIP:
			*ret_name = "gzip";
			break;
		case ARCHIVE_FILTER_XZ:
			*ret_name = "xz";
			break;
		case ARCHIVE_FILTER_ZSTD:
			*ret_name = "zstd";
			break;
		default:
			*ret_name = "compressed";
			break;
		}
		*ret_refused = true;
		e = 0;
		goto out;
	}
	if (!*ret_tar) {
		size_t got = 0;
		while (got < sizeof(head)) {
			n = archive_read_data(a, head + got, sizeof(head) - got);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		if (n < 0)
			goto out;
		img_detect_format(head, got, ret_name, ret_refused);
	} else {
		*ret_name = "tar";
		*ret_refused = false;
	}
	e = 0;
out:
	archive_read_free(a);
	return e;
}

int img_plain_kind(const char *path, const char **ret_kind, char *err, size_t errlen)
{
	const char *name, *inner;
	bool refused, tar = false;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	e = detect_fd(fd, &name, &refused);
	close(fd);
	if (e < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-e));
		return e;
	}
	if (refused) {
		refuse_msg(name, err, errlen);
		return -EINVAL;
	}
	if (strcmp(name, "tar") == 0) {
		*ret_kind = "tar";
		return 0;
	}
	if (strcmp(name, "bzip2") == 0) {
		snprintf(err, errlen,
		         "bzip2 is not streamed by the agent: recompress with zstd "
		         "(bzcat in | zstd -T0 -o out.zst)");
		return -EINVAL;
	}
	if (strcmp(name, "gzip") && strcmp(name, "xz") && strcmp(name, "zstd")) {
		*ret_kind = "raw";
		return 0;
	}
	e = inner_detect(path, &inner, &refused, &tar);
	if (e < 0) {
		snprintf(err, errlen, "%s: the %s data does not decompress", path, name);
		return e;
	}
	if (refused && img_format_advice(inner) == NULL) {
		snprintf(err, errlen,
		         "%s: %s data inside %s: compressed twice; the agent decompresses once: "
		         "decompress it to the disk image and compress that once",
		         path, inner, name);
		return -EINVAL;
	}
	if (refused) {
		refuse_msg(inner, err, errlen);
		return -EINVAL;
	}
	if (strcmp(name, "gzip") == 0)
		*ret_kind = tar ? "tar.gz" : "raw.gz";
	else if (strcmp(name, "xz") == 0)
		*ret_kind = tar ? "tar.xz" : "raw.xz";
	else
		*ret_kind = tar ? "tar.zst" : "raw.zst";
	return 0;
}

struct plain_arg {
	struct img_cat_plain p;
};

static int catalog_add_plain(struct img_catalog *c, void *arg)
{
	return img_catalog_add_plain(c, &((struct plain_arg *)arg)->p);
}

int img_register_plain(struct img_repo *r, const struct rb_key *key, const char *name,
                       const char *version, const char *path, char *err, size_t errlen)
{
	struct plain_arg a;
	const char *kind, *base = strrchr(path, '/');
	char tmp[128], rel[IMG_CAT_PATH_MAX];
	EVP_MD_CTX *md = NULL;
	uint8_t *buf = NULL, h[32];
	uint64_t size = 0;
	int in = -1, out = -1, e;

	base = base ? base + 1 : path;
	if (!img_name_is_valid(name) || !img_name_is_valid(version)) {
		snprintf(err, errlen, "name and version must match [A-Za-z0-9._+-]{1,64}");
		return -EINVAL;
	}
	if (!rb_path_is_safe(base) || strlen(base) > 200 || base[0] == '.') {
		snprintf(err, errlen, "%s: file name not usable in the repository; rename it",
		         base);
		return -EINVAL;
	}
	e = img_plain_kind(path, &kind, err, errlen);
	if (e < 0)
		return e;
	memset(&a, 0, sizeof(a));
	snprintf(rel, sizeof(rel), "plain/%s", base);
	in = open(path, O_RDONLY | O_CLOEXEC);
	md = EVP_MD_CTX_new();
	buf = malloc(1 << 20);
	if (in < 0 || !md || !buf || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		e = in < 0 ? -errno : -ENOMEM;
		snprintf(err, errlen, "%s: %s", path, strerror(-e));
		goto out;
	}
	mkdirat(r->dirfd, "plain", 0755);
	mkdirat(r->dirfd, ".tmp", 0755);
	out = img_repo_tmpfile(r, "plain", tmp);
	if (out < 0) {
		e = out;
		snprintf(err, errlen, "%s/.tmp: %s", r->path, strerror(-e));
		goto out;
	}
	for (;;) {
		ssize_t k = read(in, buf, 1 << 20), w = 0;
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			e = -errno;
			snprintf(err, errlen, "reading %s: %s", path, strerror(-e));
			goto out_unlink;
		}
		if (k == 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)k);
		size += (uint64_t)k;
		while (w < k) {
			ssize_t x = write(out, buf + w, (size_t)(k - w));
			if (x < 0 && errno == EINTR)
				continue;
			if (x < 0) {
				e = -errno;
				snprintf(err, errlen, "writing %s: %s", tmp, strerror(-e));
				goto out_unlink;
			}
			w += x;
		}
	}
	EVP_DigestFinal_ex(md, h, NULL);
	if (fsync(out) < 0) {
		e = -errno;
		snprintf(err, errlen, "fsync: %s", strerror(-e));
		goto out_unlink;
	}
	snprintf(a.p.name, sizeof(a.p.name), "%s", name);
	snprintf(a.p.version, sizeof(a.p.version), "%s", version);
	snprintf(a.p.path, sizeof(a.p.path), "%s", rel);
	snprintf(a.p.kind, sizeof(a.p.kind), "%s", kind);
	rb_hex(h, 32, a.p.sha256);
	a.p.size = size;
	e = img_repo_lock(r);
	if (e < 0) {
		snprintf(err, errlen, "locking: %s", strerror(-e));
		goto out_unlink;
	}
	{
		struct stat st;
		if (fstatat(r->dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			e = -EEXIST;
			snprintf(err, errlen,
			         "%s already exists in the repository: rename the file", rel);
			img_repo_unlock(r);
			goto out_unlink;
		}
	}
	if (renameat(r->dirfd, tmp, r->dirfd, rel) < 0) {
		e = -errno;
		snprintf(err, errlen, "rename into %s: %s", rel, strerror(-e));
		img_repo_unlock(r);
		goto out_unlink;
	}
	e = img_repo_catalog_update(r, key, catalog_add_plain, &a, err, errlen);
	if (e < 0)
		unlinkat(r->dirfd, rel, 0);
	img_repo_unlock(r);
	goto out;
out_unlink:
	unlinkat(r->dirfd, tmp, 0);
out:
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	EVP_MD_CTX_free(md);
	free(buf);
	return e;
}
