/* plain: images a site already has, from the signed catalogue, onto a disk.
 *
 * The catalogue (catalog.json) and its detached signature are fetched with
 * a size cap and the signature is checked against the trusted keys before
 * the catalogue is parsed; the plain entry for name/version gives the
 * file's path, kind, SHA-256 and size, and nothing else is trusted (not
 * the plan, not the server's headers). A tar kind goes to agent/rootfs.c;
 * a raw kind (raw, raw.gz, raw.xz, raw.zst) is written here:
 *
 *  1. The target is opened (a block device exclusively, O_EXCL: refused
 *     while a partition of it is mounted; a file is created, and removed
 *     again if the run fails before step 3) but not written yet.
 *  2. The file streams in (agent/stream.c: its own thread, hashing the
 *     stored bytes) and libarchive decompresses it in this thread (raw
 *     format, only the filter the kind names; libarchive's external-
 *     program fallback is refused) into 1 MiB blocks.
 *  3. Block 0 (the first MiB of the image: MBR, GPT header and entries,
 *     boot code) is held in memory. Once it is complete (so that a missing
 *     file, a refused format such as qcow2 or a VMDK descriptor, plain or
 *     inside the compression, a second compression or a tarball where a
 *     disk should be (agent_plain_check_head()), or an undecodable head
 *     leaves the target untouched), the target is made
 *     safe: a file is truncated to 0 (a fresh sparse file), a block device
 *     has its first and last MiB zeroed and synced. From here until step 5
 *     the target holds no valid MBR or GPT.
 *  4. Blocks go to a writer thread through a queue of WQ_MAX blocks, so
 *     decompression and writes overlap and memory stays bounded (blocks
 *     about 13 MiB, stream 4.5 MiB, plus the decoder's window). The two
 *     most recent blocks are held back, so that the image's last MiB
 *     (the backup GPT) is never written before the end either. On a fresh
 *     file, 64 KiB runs of zeros are not written (holes); on a block
 *     device they are zeroed (BLKZEROOUT, or written where the device
 *     cannot), since old data lies there.
 *  5. When the decompressed stream ends, the rest of the file is read and
 *     the size and SHA-256 of the whole stored file must match the signed
 *     entry. Only then, after an fdatasync: the held tail blocks, an
 *     fdatasync, block 0, fsync.
 * A decompression error does not stop at the decoder's message: the rest
 * of the file is read so that the error names the real cause (a hash
 * mismatch: the stored file was damaged or replaced) when there is one.
 *
 * Owns the target fd, the writer thread, the blocks. Never writes a byte of
 * the boot areas before the whole file verified, never writes beyond a
 * block device's end, never decompresses with an external program. */
#include "agent/plain.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/fetch.h"
#include "agent/rootfs.h"
#include "agent/stream.h"
#include "common/catalog.h"
#include "common/imgformat.h"
#include "common/sha256.h"
#include "common/sign.h"
#include "common/util.h"

#define BLOCK    (1024U * 1024) /* image bytes per block; block 0 = the head MiB */
#define SEG      (64U * 1024)   /* hole granularity */
#define WQ_MAX   8              /* blocks queued for the writer */
#define URL_MAX  4096
#define SIG_MAX  4096
#define MAX_PUBS 8

/* ---- pure helpers ------------------------------------------------------------ */

int agent_errf(char *err, size_t errlen, int e, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return e;
}

int agent_plain_kind_parse(const char *kind, bool *ret_tar, enum agent_plain_filter *ret_filter)
{
	static const struct {
		const char *name;
		bool tar;
		enum agent_plain_filter f;
	} kinds[] = {
		{ "raw", false, AGENT_PLAIN_NONE },  { "raw.gz", false, AGENT_PLAIN_GZIP },
		{ "raw.xz", false, AGENT_PLAIN_XZ }, { "raw.zst", false, AGENT_PLAIN_ZSTD },
		{ "tar", true, AGENT_PLAIN_NONE },   { "tar.gz", true, AGENT_PLAIN_GZIP },
		{ "tar.xz", true, AGENT_PLAIN_XZ },  { "tar.zst", true, AGENT_PLAIN_ZSTD },
	};

	for (size_t i = 0; kind && i < RB_ARRAY_SIZE(kinds); i++)
		if (strcmp(kind, kinds[i].name) == 0) {
			*ret_tar = kinds[i].tar;
			*ret_filter = kinds[i].f;
			return 0;
		}
	return -EINVAL;
}

int agent_url_join(const char *base, const char *path, char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(base), k;

	while (n > 0 && base[n - 1] == '/')
		n--;
	if (n + 2 > len)
		return -ENAMETOOLONG;
	memcpy(buf, base, n);
	buf[n] = '/';
	k = n + 1;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		             (*p >= '0' && *p <= '9') || strchr("._~+/-", *p);

		if (k + (plain ? 1 : 3) >= len)
			return -ENAMETOOLONG;
		if (plain) {
			buf[k++] = (char)*p;
		} else {
			buf[k++] = '%';
			buf[k++] = hex[*p >> 4];
			buf[k++] = hex[*p & 15];
		}
	}
	buf[k] = '\0';
	return 0;
}

bool agent_is_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	/* compare the buffer with itself shifted by one: memcmp is vectorised */
	return len == 0 || (b[0] == 0 && memcmp(b, b + 1, len - 1) == 0);
}

int agent_plain_check_head(const void *head, size_t len, const char *url, const char *kind,
                           char *err, size_t errlen)
{
	const char *name;
	bool refused;

	img_detect_format(head, RB_MIN(len, (size_t)IMG_DETECT_HEAD), &name, &refused);
	if (refused)
		return agent_errf(
		        err, errlen, -EINVAL,
		        "%s: the catalogue says %s, the data is a %s; nothing was written", url,
		        kind,
		        img_format_advice(name) ? img_format_advice(name)
		                                : "format that is not a raw disk");
	/* What is left after the kind's one decompression must be a disk, not
	 * another compressed file or a tarball: written as it is, it would
	 * only be garbage on the disk. */
	if (strcmp(name, "gzip") == 0 || strcmp(name, "xz") == 0 || strcmp(name, "zstd") == 0 ||
	    strcmp(name, "tar") == 0)
		return agent_errf(err, errlen, -EINVAL,
		                  "%s: the catalogue says %s, the data inside is %s, not a disk "
		                  "image; nothing was written: register the disk image itself",
		                  url, kind, name);
	return 0;
}

/* ---- the catalogue ------------------------------------------------------------- */

int agent_plain_lookup(const struct agent_plain_opts *o, struct img_cat_plain *ret,
                       uint64_t *ret_fetched, char *err, size_t errlen)
{
	struct agent_fetch_opts fo = { .timeout_s = o->timeout_s ? o->timeout_s : 30,
		                       .retries = o->retries ? o->retries : 4,
		                       .parallel = 1,
		                       .hosts = o->hosts };
	const struct img_cat_plain *p;
	struct img_catalog *c = NULL;
	char url[URL_MAX], surl[URL_MAX + 8], perr[256];
	char *data = NULL, *sig = NULL;
	size_t len = 0, slen = 0;
	bool tar;
	enum agent_plain_filter f;
	int e;

	if (!agent_url_is_http(o->repo))
		return agent_errf(err, errlen, -EPROTO,
		                  "%s: only http:// and https:// repositories", o->repo);
	if (agent_url_join(o->repo, "catalog.json", url, sizeof(url)) < 0)
		return agent_errf(err, errlen, -ENAMETOOLONG, "repository URL too long");
	snprintf(surl, sizeof(surl), "%s.sig", url);
	e = agent_fetch_small(url, IMG_CATALOG_MAX_SIZE, &fo, &data, &len, NULL, err, errlen);
	if (e < 0)
		goto out;
	e = agent_fetch_small(surl, SIG_MAX, &fo, &sig, &slen, NULL, err, errlen);
	if (e < 0)
		goto out;
	/* The signature first: nothing of an unverified catalogue is parsed. */
	e = rb_verify(o->pubs, o->n_pubs, data, len, sig, slen);
	if (e < 0) {
		rb_errf(err, errlen,
		        "%s: %s: the catalogue was changed after it was signed, or signed with a "
		        "key this agent does not trust",
		        surl,
		        e == -EINVAL ? "malformed signature"
		                     : "signature does not verify with any trusted key");
		e = e == -EINVAL ? -EINVAL : -EBADMSG;
		goto out;
	}
	e = img_catalog_parse(data, len, &c, perr, sizeof(perr));
	if (e < 0) {
		rb_errf(err, errlen, "%s: %s", url, perr);
		goto out;
	}
	p = img_catalog_find_plain(c, o->name, o->version);
	if (!p) {
		if (img_catalog_find_image(c, o->name, o->version))
			rb_errf(err, errlen,
			        "%s: %s %s is a rackboot (chunked) image, not a plain one: "
			        "write it with rackboot-agent image",
			        url, o->name, o->version);
		else
			rb_errf(err, errlen, "%s: no plain image %s %s in the catalogue", url,
			        o->name, o->version);
		e = -ENOENT;
		goto out;
	}
	if (agent_plain_kind_parse(p->kind, &tar, &f) < 0 || !rb_path_is_safe(p->path) ||
	    strncmp(p->path, "plain/", 6) != 0) {
		rb_errf(err, errlen, "%s: plain image %s %s: unsupported kind or path", url,
		        o->name, o->version);
		e = -EINVAL;
		goto out;
	}
	*ret = *p;
	if (ret_fetched)
		*ret_fetched = len + slen;
	e = 0;
out:
	img_catalog_free(c);
	free(data);
	free(sig);
	return e;
}

/* ---- raw: the writer thread ----------------------------------------------------- */

struct block {
	struct block *next;
	uint64_t off;
	size_t len;
	uint8_t data[BLOCK];
};

struct raw {
	const struct agent_plain_opts *o;
	struct agent_stream *s;
	const char *kind; /* the catalogue's */
	uint64_t size;    /* of the stored file */
	int fd;
	bool blk;
	bool created; /* the target file did not exist: removed if nothing is written */
	bool touched; /* make_safe() began: the target may have changed */
	uint64_t dev_size;

	pthread_t th;
	bool th_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct block *qhead, *qtail, *pool;
	unsigned qlen;
	bool closing;
	int error; /* the writer's */
	char err[512];

	uint64_t t0, last_progress;
};

static int zero_out(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];
	uint64_t r[2] = { off, len };

	if (len == 0)
		return 0;
	if (off % 512 == 0 && len % 512 == 0 && ioctl(fd, BLKZEROOUT, r) == 0)
		return 0;
	while (len > 0) {
		size_t n = (size_t)RB_MIN(len, (uint64_t)sizeof(zeros));
		int e = rb_pwrite_all(fd, zeros, n, off);

		if (e < 0)
			return e;
		off += n;
		len -= n;
	}
	return 0;
}

/* Writes a block: runs of non-zero segments with one pwrite each; zero
 * runs are holes on a (fresh) file and zeroed on a block device. */
static int write_block(const struct raw *r, const struct block *b)
{
	size_t pos = 0;

	while (pos < b->len) {
		size_t end = pos;
		bool zero = agent_is_zero(b->data + pos, RB_MIN((size_t)SEG, b->len - pos));
		int e = 0;

		while (end < b->len) {
			size_t n = RB_MIN((size_t)SEG, b->len - end);

			if (agent_is_zero(b->data + end, n) != zero)
				break;
			end += n;
		}
		if (!zero)
			e = rb_pwrite_all(r->fd, b->data + pos, end - pos, b->off + pos);
		else if (r->blk)
			e = zero_out(r->fd, b->off + pos, end - pos);
		if (e < 0)
			return e;
		pos = end;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct raw *r = arg;

	for (;;) {
		struct block *b;
		bool failed;
		int e = 0;

		pthread_mutex_lock(&r->lock);
		while (!r->qhead && !r->closing)
			pthread_cond_wait(&r->cond, &r->lock);
		b = r->qhead;
		if (b) {
			r->qhead = b->next;
			if (!r->qhead)
				r->qtail = NULL;
		}
		failed = r->error != 0; /* then the queue is only emptied */
		pthread_mutex_unlock(&r->lock);
		if (!b)
			break;
		if (!failed)
			e = write_block(r, b);
		pthread_mutex_lock(&r->lock);
		if (e < 0 && !r->error) {
			r->error = e;
			snprintf(r->err, sizeof(r->err), "writing %s at %llu: %s", r->o->target,
			         (unsigned long long)b->off, strerror(-e));
		}
		b->next = r->pool;
		r->pool = b;
		r->qlen--;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

/* Hands a block to the writer; waits while WQ_MAX are queued. */
static int push_block(struct raw *r, struct block *b, char *err, size_t errlen)
{
	int e;

	if (r->blk && b->off + b->len > r->dev_size) {
		pthread_mutex_lock(&r->lock);
		b->next = r->pool;
		r->pool = b;
		pthread_mutex_unlock(&r->lock);
		return agent_errf(err, errlen, -ENOSPC,
		                  "the image is larger than %s (%llu bytes): use a larger disk",
		                  r->o->target, (unsigned long long)r->dev_size);
	}
	pthread_mutex_lock(&r->lock);
	while (r->qlen >= WQ_MAX && !r->error)
		pthread_cond_wait(&r->cond, &r->lock);
	e = r->error;
	if (e) {
		snprintf(err, errlen, "%s", r->err);
		b->next = r->pool;
		r->pool = b;
	} else {
		b->next = NULL;
		if (r->qtail)
			r->qtail->next = b;
		else
			r->qhead = b;
		r->qtail = b;
		r->qlen++;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	return e;
}

static struct block *get_block(struct raw *r)
{
	struct block *b;

	pthread_mutex_lock(&r->lock);
	b = r->pool;
	if (b)
		r->pool = b->next;
	pthread_mutex_unlock(&r->lock);
	if (!b)
		b = malloc(sizeof(*b));
	if (b) {
		b->next = NULL;
		b->len = 0;
	}
	return b;
}

/* Waits for the writer to empty its queue and stop; its error or 0. */
static int stop_writer(struct raw *r)
{
	if (r->th_started) {
		pthread_mutex_lock(&r->lock);
		r->closing = true;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->th, NULL);
		r->th_started = false;
	}
	return r->error;
}

/* ---- raw: the whole write ----------------------------------------------------------- */

void agent_plain_progress(const struct agent_plain_opts *o, const char *what, uint64_t done,
                          uint64_t total, uint64_t t0, uint64_t *last, bool final)
{
	uint64_t now = rb_now_usec();
	bool tty = isatty(STDERR_FILENO);
	double secs, rate;

	if (!final && now - *last < 250000ULL)
		return;
	if (o->progress_cb)
		o->progress_cb(o->progress_arg, done, total);
	if (o->progress && (final || now - *last >= (tty ? 500000ULL : 5000000ULL))) {
		secs = (double)(now - t0) / 1e6;
		rate = secs > 0 ? (double)done / secs : 0;
		fprintf(stderr, "%s%s: %.1f / %.1f MiB fetched (%.0f%%), %.1f MiB/s, ETA %.0f s%s",
		        tty ? "\r" : "", what, (double)done / 1048576, (double)total / 1048576,
		        total ? 100.0 * (double)done / (double)total : 100.0, rate / 1048576,
		        rate > 0 && total > done ? (double)(total - done) / rate : 0.0,
		        tty && !final ? "   " : "\n");
	}
	*last = now;
}

static void progress(struct raw *r, bool final)
{
	agent_plain_progress(r->o, "plain", agent_stream_received(r->s), r->size, r->t0,
	                     &r->last_progress, final);
}

static int open_target(struct raw *r, char *err, size_t errlen)
{
	const char *t = r->o->target;
	struct stat st;
	int fd;

	if (stat(t, &st) == 0 && S_ISBLK(st.st_mode)) {
		fd = open(t, O_RDWR | O_EXCL | O_CLOEXEC);
	} else {
		fd = open(t, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		r->created = fd >= 0;
		if (fd < 0 && errno == EEXIST)
			fd = open(t, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = -errno;

		if (fd >= 0)
			close(fd);
		return agent_errf(err, errlen, e, "%s: %s%s", t, strerror(-e),
		                  e == -EBUSY ? " (a partition of it is mounted or in use)" : "");
	}
	r->fd = fd;
	r->blk = S_ISBLK(st.st_mode);
	if (r->blk) {
		if (ioctl(fd, BLKGETSIZE64, &r->dev_size) < 0) {
			int e = -errno;

			return agent_errf(err, errlen, e, "%s: BLKGETSIZE64: %s", t, strerror(-e));
		}
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return agent_errf(err, errlen, -EINVAL, "%s: not a regular file or block device",
		                  t);
	return 0;
}

/* Step 3: the target holds no MBR or GPT from here on. */
static int make_safe(struct raw *r, char *err, size_t errlen)
{
	int e = 0;

	if (!r->blk) {
		if (ftruncate(r->fd, 0) < 0)
			e = -errno;
	} else {
		uint64_t head = RB_MIN((uint64_t)BLOCK, r->dev_size);

		if ((e = zero_out(r->fd, 0, head)) == 0 &&
		    (e = zero_out(r->fd, r->dev_size - head, head)) == 0 && fdatasync(r->fd) < 0)
			e = -errno;
	}
	if (e < 0)
		rb_errf(err, errlen, "clearing the boot areas of %s: %s", r->o->target,
		        strerror(-e));
	return e;
}

static la_ssize_t read_cb(struct archive *a, void *ud, const void **buf)
{
	ssize_t n = agent_stream_read(ud, buf);

	if (n < 0) {
		archive_set_error(a, (int)-n, "download failed");
		return -1;
	}
	return n;
}

static int expected_filter(enum agent_plain_filter f)
{
	switch (f) {
	case AGENT_PLAIN_GZIP:
		return ARCHIVE_FILTER_GZIP;
	case AGENT_PLAIN_XZ:
		return ARCHIVE_FILTER_XZ;
	case AGENT_PLAIN_ZSTD:
		return ARCHIVE_FILTER_ZSTD;
	default:
		return ARCHIVE_FILTER_NONE;
	}
}

int agent_plain_open(struct agent_stream *s, bool tar, enum agent_plain_filter f, const char *url,
                     const char *kind, struct archive **ret, struct archive_entry **ret_entry,
                     char *err, size_t errlen)
{
	struct archive *a = archive_read_new();
	int r, e;

	if (!a)
		return agent_errf(err, errlen, -ENOMEM, "out of memory");
	r = tar ? archive_read_support_format_tar(a) : archive_read_support_format_raw(a);
	if (r == ARCHIVE_OK && f == AGENT_PLAIN_GZIP)
		r = archive_read_support_filter_gzip(a);
	else if (r == ARCHIVE_OK && f == AGENT_PLAIN_XZ)
		r = archive_read_support_filter_xz(a);
	else if (r == ARCHIVE_OK && f == AGENT_PLAIN_ZSTD)
		r = archive_read_support_filter_zstd(a);
	if (r != ARCHIVE_OK) {
		/* ARCHIVE_WARN: libarchive would run an external program */
		e = agent_errf(err, errlen, -ENOTSUP, "%s: this libarchive cannot decode %s itself",
		               url, kind);
		goto fail;
	}
	r = archive_read_open(a, s, NULL, read_cb, NULL);
	if (r == ARCHIVE_OK)
		r = archive_read_next_header(a, ret_entry);
	if (r == ARCHIVE_EOF) {
		e = agent_errf(err, errlen, -EBADMSG, "%s: the %s is empty", url,
		               tar ? "tarball" : "image");
		goto fail;
	}
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
		e = agent_plain_read_failed(
		        s, a, url, tar ? "reading the tarball" : "decompression", err, errlen);
		goto fail;
	}
	if (archive_filter_code(a, 0) != expected_filter(f)) {
		e = agent_errf(err, errlen, -EBADMSG,
		               "%s: the file is %s data, not what its kind %s says", url,
		               archive_filter_name(a, 0), kind);
		goto fail;
	}
	*ret = a;
	return 0;
fail:
	archive_read_free(a);
	return e;
}

int agent_plain_read_failed(struct agent_stream *s, struct archive *a, const char *url,
                            const char *what, char *err, size_t errlen)
{
	char serr[512], aerr[256];
	int e;

	snprintf(aerr, sizeof(aerr), "%s",
	         archive_error_string(a) ? archive_error_string(a) : "unknown error");
	e = agent_stream_finish(s, serr, sizeof(serr));
	if (e < 0) {
		if (strcmp(aerr, "download failed") == 0)
			rb_errf(err, errlen, "%s", serr);
		else
			rb_errf(err, errlen, "%s (%s stopped first: %s)", serr, what, aerr);
		return e;
	}
	rb_errf(err, errlen,
	        "%s: %s failed: %s; the file matches its signed catalogue entry, so it was "
	        "registered broken: register a good one",
	        url, what, aerr);
	return -EBADMSG;
}

/* Fills b with up to BLOCK decompressed bytes; 0 or -1 (libarchive error). */
static int fill_block(struct archive *a, struct block *b, bool *ret_eof)
{
	while (b->len < BLOCK) {
		la_ssize_t n = archive_read_data(a, b->data + b->len, BLOCK - b->len);

		if (n < 0)
			return -1;
		if (n == 0) {
			*ret_eof = true;
			break;
		}
		b->len += (size_t)n;
	}
	return 0;
}

/* Step 5: the held tail, then block 0. */
static int write_boot_areas(struct raw *r, struct block *const held[3], uint64_t total, char *err,
                            size_t errlen)
{
	int e = 0;

	if (fdatasync(r->fd) < 0 || (!r->blk && ftruncate(r->fd, (off_t)total) < 0))
		e = -errno;
	for (int k = 1; k < 3 && e == 0; k++)
		if (held[k])
			e = write_block(r, held[k]);
	if (e == 0 && fdatasync(r->fd) < 0)
		e = -errno;
	if (e == 0 && held[0])
		e = write_block(r, held[0]);
	if (e == 0 && fsync(r->fd) < 0)
		e = -errno;
	if (e < 0)
		rb_errf(err, errlen, "writing the boot areas of %s: %s", r->o->target,
		        strerror(-e));
	return e;
}

static int raw_stream(struct raw *r, struct archive *a, const char *url, struct block *held[3],
                      uint64_t *ret_total, char *err, size_t errlen)
{
	uint64_t off = 0;
	bool eof = false;
	int e;

	while (!eof) {
		struct block *b = get_block(r);

		if (!b)
			return agent_errf(err, errlen, -ENOMEM, "out of memory");
		b->off = off;
		if (fill_block(a, b, &eof) < 0) {
			free(b);
			return agent_plain_read_failed(r->s, a, url, "decompression", err, errlen);
		}
		off += b->len;
		if (b->len == 0) {
			free(b);
			break;
		}
		if (!held[0]) {
			held[0] = b;
			e = agent_plain_check_head(b->data, b->len, url, r->kind, err, errlen);
			if (e < 0)
				return e;
			r->touched = true;
			if ((e = make_safe(r, err, errlen)) < 0)
				return e;
			if (pthread_create(&r->th, NULL, writer_main, r) != 0)
				return agent_errf(err, errlen, -EAGAIN,
				                  "cannot start the writer thread");
			r->th_started = true;
		} else {
			if (held[1] && (e = push_block(r, held[1], err, errlen)) < 0) {
				held[1] = NULL;
				free(b);
				return e;
			}
			held[1] = held[2];
			held[2] = b;
		}
		if (r->blk && off > r->dev_size)
			return agent_errf(
			        err, errlen, -ENOSPC,
			        "the image is larger than %s (%llu bytes): use a larger disk",
			        r->o->target, (unsigned long long)r->dev_size);
		progress(r, false);
	}
	if (off == 0)
		return agent_errf(err, errlen, -EBADMSG, "%s: the image is empty", url);
	if ((e = agent_stream_finish(r->s, err, errlen)) < 0)
		return e;
	if ((e = stop_writer(r)) < 0)
		return agent_errf(err, errlen, e, "%s", r->err);
	*ret_total = off;
	return write_boot_areas(r, held, off, err, errlen);
}

static int raw_write(const struct agent_plain_opts *o, const struct img_cat_plain *p,
                     const struct agent_stream_opts *so, enum agent_plain_filter f,
                     struct agent_plain_stats *st, char *err, size_t errlen)
{
	struct raw r = { .o = o, .fd = -1, .size = p->size, .kind = p->kind };
	struct block *held[3] = { NULL, NULL, NULL };
	struct archive_entry *ent;
	struct archive *a = NULL;
	uint64_t total = 0;
	int e;

	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.cond, NULL);
	if ((e = open_target(&r, err, errlen)) < 0)
		goto out;
	if (r.blk && p->kind[3] == '\0' && p->size > r.dev_size) {
		e = agent_errf(err, errlen, -ENOSPC,
		               "%s has %llu bytes, the image %llu: use a larger disk", o->target,
		               (unsigned long long)r.dev_size, (unsigned long long)p->size);
		goto out;
	}
	if ((e = agent_stream_new(so, &r.s)) < 0) {
		rb_errf(err, errlen, "starting the download: %s", strerror(-e));
		goto out;
	}
	r.t0 = rb_now_usec();
	if ((e = agent_plain_open(r.s, false, f, so->url, p->kind, &a, &ent, err, errlen)) < 0)
		goto out;
	e = raw_stream(&r, a, so->url, held, &total, err, errlen);
	if (e == 0) {
		progress(&r, true);
		st->written_bytes = total;
	}
out:
	if (e < 0 && o->progress && r.t0 && r.last_progress)
		fputc('\n', stderr);
	if (r.s)
		st->fetched_bytes += agent_stream_received(r.s);
	agent_stream_free(r.s); /* stops the download first: the writer may wait on it */
	if (r.th_started) {
		pthread_mutex_lock(&r.lock);
		r.error = r.error ? r.error : -ECANCELED; /* drop what is queued */
		pthread_mutex_unlock(&r.lock);
		stop_writer(&r);
	}
	if (e < 0 && r.touched && r.blk) {
		/* a block may have reached into the device's last MiB */
		uint64_t head = RB_MIN((uint64_t)BLOCK, r.dev_size);

		if (zero_out(r.fd, r.dev_size - head, head) == 0)
			fdatasync(r.fd);
	}
	if (a)
		archive_read_free(a);
	for (int k = 0; k < 3; k++)
		free(held[k]);
	while (r.pool) {
		struct block *b = r.pool;

		r.pool = b->next;
		free(b);
	}
	if (r.fd >= 0)
		close(r.fd);
	/* failed before a byte was written: no empty file left behind */
	if (e < 0 && !r.touched && r.created)
		unlink(o->target);
	pthread_mutex_destroy(&r.lock);
	pthread_cond_destroy(&r.cond);
	return e;
}

/* ---- entry point ------------------------------------------------------------------- */

int agent_plain_write(const struct agent_plain_opts *o, struct agent_plain_stats *ret, char *err,
                      size_t errlen)
{
	struct agent_plain_stats st = { 0 };
	struct agent_stream_opts so = { 0 };
	struct img_cat_plain p;
	char url[URL_MAX];
	uint64_t t0 = rb_now_usec(), fetched = 0;
	enum agent_plain_filter f;
	bool tar;
	int e;

	if (!o->repo || !o->name || !o->version || !o->target)
		return agent_errf(err, errlen, -EINVAL,
		                  "repository, name, version and target are required");
	if (!img_name_is_valid(o->name) || !img_name_is_valid(o->version))
		return agent_errf(err, errlen, -EINVAL, "invalid image name or version");
	if (o->fstype && strcmp(o->fstype, "ext4") != 0 && strcmp(o->fstype, "xfs") != 0)
		return agent_errf(err, errlen, -EINVAL, "filesystem %s: only ext4 and xfs",
		                  o->fstype);
	if ((e = agent_plain_lookup(o, &p, &fetched, err, errlen)) < 0)
		return e;
	st.fetched_bytes = fetched;
	agent_plain_kind_parse(p.kind, &tar, &f);
	if (agent_url_join(o->repo, p.path, url, sizeof(url)) < 0)
		return agent_errf(err, errlen, -ENAMETOOLONG, "repository URL too long");
	so.url = url;
	so.size = p.size;
	if (rb_unhex(p.sha256, so.sha256, sizeof(so.sha256)) < 0)
		return agent_errf(err, errlen, -EINVAL, "catalogue: bad sha256 for %s", p.path);
	so.timeout_s = o->timeout_s ? o->timeout_s : 30;
	so.retries = o->retries ? o->retries : 4;
	so.hosts = o->hosts;
	if (tar)
		e = agent_rootfs_write(o, &p, &so, f, &st, err, errlen);
	else
		e = raw_write(o, &p, &so, f, &st, err, errlen);
	if (e < 0)
		return e;
	st.usec = rb_now_usec() - t0;
	*ret = st;
	return 0;
}

/* ---- the command -------------------------------------------------------------------- */

static void usage(FILE *o)
{
	fputs("usage: rackboot-agent plain --repo URL --pub KEYFILE [--pub KEYFILE...]\n"
	      "                            --name NAME --version VERSION --target PATH\n"
	      "                            [--fstype ext4|xfs] [--timeout-s N] [--retries N] "
	      "[-q]\n"
	      "                            [--allow-host HOST[:PORT]...]\n"
	      "Writes a plain image of the signed catalogue onto PATH: a raw disk image\n"
	      "(raw, .gz, .xz, .zst) onto a file or block device, or a rootfs tarball\n"
	      "(tar, .gz, .xz, .zst) as a new GPT disk (ESP + root) onto a block device.\n"
	      "  --fstype T     root filesystem for a tarball (default ext4)\n"
	      "  --timeout-s N  connect timeout and low-speed abort window (default 30)\n"
	      "  --retries N    failed requests in a row before giving up, 1-100 (default 4)\n"
	      "  --allow-host H another host the repository may redirect to (repeatable;\n"
	      "                 without a port: any port); others are refused\n"
	      "  -q, --quiet    no progress on stderr\n"
	      "Exit: 0 written and verified, 1 failure (reason on stderr), 2 usage.\n",
	      o);
}

int agent_cmd_plain(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "pub", required_argument, NULL, 'p' },
		{ "name", required_argument, NULL, 'n' },
		{ "version", required_argument, NULL, 'V' },
		{ "target", required_argument, NULL, 't' },
		{ "fstype", required_argument, NULL, 'f' },
		{ "timeout-s", required_argument, NULL, 'T' },
		{ "retries", required_argument, NULL, 'N' },
		{ "allow-host", required_argument, NULL, 'A' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_plain_opts o = { .progress = true };
	struct rb_key *keys[MAX_PUBS];
	struct agent_plain_stats st;
	const char *pubs[MAX_PUBS], *allow[AGENT_HOSTS_MAX];
	struct agent_hosts hosts;
	size_t n_pubs = 0, n_keys = 0, n_allow = 0;
	char err[1024];
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
				fprintf(stderr, "rackboot-agent plain: at most %d --pub\n",
				        MAX_PUBS);
				return 2;
			}
			pubs[n_pubs++] = optarg;
			break;
		case 'n':
			o.name = optarg;
			break;
		case 'V':
			o.version = optarg;
			break;
		case 't':
			o.target = optarg;
			break;
		case 'f':
			o.fstype = optarg;
			break;
		case 'T':
		case 'N':
			if (rb_strtonum(optarg, 1, c == 'T' ? 3600 : 100, &v) < 0) {
				fprintf(stderr, "rackboot-agent plain: %s: expected a number\n",
				        c == 'T' ? "--timeout-s" : "--retries");
				return 2;
			}
			if (c == 'T')
				o.timeout_s = (unsigned)v;
			else
				o.retries = (unsigned)v;
			break;
		case 'A':
			if (n_allow == AGENT_HOSTS_MAX - 1) {
				fprintf(stderr, "rackboot-agent plain: at most %d --allow-host\n",
				        AGENT_HOSTS_MAX - 1);
				return 2;
			}
			allow[n_allow++] = optarg;
			break;
		case 'q':
			o.progress = false;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !o.repo || !n_pubs || !o.name || !o.version || !o.target) {
		usage(stderr);
		return 2;
	}
	if (!img_name_is_valid(o.name) || !img_name_is_valid(o.version)) {
		fputs("rackboot-agent plain: --name/--version: [A-Za-z0-9._+-]{1,64}\n", stderr);
		return 2;
	}
	if (o.fstype && strcmp(o.fstype, "ext4") != 0 && strcmp(o.fstype, "xfs") != 0) {
		fputs("rackboot-agent plain: --fstype: ext4 or xfs\n", stderr);
		return 2;
	}
	if (agent_hosts_build(&hosts, o.repo, allow, n_allow, AGENT_HOSTS_HINT_CMD, err,
	                      sizeof(err)) < 0) {
		fprintf(stderr, "rackboot-agent plain: %s\n", err);
		return 2;
	}
	o.hosts = &hosts;
	e = rb_keys_load_public((const char *const *)pubs, n_pubs, keys, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "rackboot-agent plain: %s\n", err);
		goto out;
	}
	n_keys = n_pubs;
	o.pubs = (const struct rb_key *const *)keys;
	o.n_pubs = n_keys;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("rackboot-agent plain: libcurl initialisation failed\n", stderr);
		goto out;
	}
	e = agent_plain_write(&o, &st, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "rackboot-agent plain: failed: %s\n", err);
	} else {
		printf("plain %s %s written to %s: fetched_bytes=%llu written_bytes=%llu "
		       "seconds=%.3f\n",
		       o.name, o.version, o.target, (unsigned long long)st.fetched_bytes,
		       (unsigned long long)st.written_bytes, (double)st.usec / 1e6);
		rc = 0;
	}
	curl_global_cleanup();
out:
	for (size_t k = 0; k < n_keys; k++)
		rb_key_free(keys[k]);
	return rc;
}
