/* writer: stage 1 of the agent, a signed image from the repository onto a
 * disk (or a plain file), verified chunk by chunk.
 *
 * Order of work, and why:
 *  1. The manifest and its signature are fetched and the signature checked
 *     against the trusted keys before the target is even opened: a forged
 *     or damaged manifest leaves the disk untouched. The manifest must name
 *     the image asked for (a validly signed manifest of another image, or
 *     another version, is refused).
 *  2. The target is opened: a plain file is created or truncated to the
 *     disk size (a fresh sparse file reads zeros), a block device must be
 *     at least the disk size. With --reimage a plain file keeps its bytes.
 *  3. The first and last MiB of the image's disk are zeroed and synced
 *     (unless the file is fresh, where they are zero already), and on a
 *     device larger than the image its own last MiB too (where a larger
 *     disk's backup GPT lives): from here until step 7 the disk holds no
 *     valid MBR, GPT (primary or backup) or boot sector, so an interrupted
 *     write never leaves a disk that looks complete.
 *  4. Ranges the manifest does not store are zeroed where the target may
 *     hold old data (block device, reimage): a hole on a file
 *     (FALLOC_FL_PUNCH_HOLE), BLKZEROOUT on a device (the kernel uses
 *     WRITE ZEROES or unmap-with-zeroing where the device guarantees it and
 *     writes zeros otherwise; plain BLKDISCARD is not used because a discard
 *     does not promise that zeros read back). On a plain file the blocks
 *     that step 6 writes are allocated first (see preallocate()).
 *  5. --reimage: every chunk outside the boot areas is read back and hashed
 *     on all cores, in disk order; chunks that match are not fetched. The
 *     fetch loop runs behind the hashing (hash_main()): a chunk that did
 *     not match is downloaded while the rest is still being hashed. This
 *     is also how a write interrupted by a reboot resumes.
 *  6. All other chunks: runs of consecutive chunks stored back to back in
 *     one pack are fetched with one Range request each (capped at
 *     RANGE_MAX bytes), up to opts.parallel at once on keep-alive
 *     connections (fetch.c), and handed to a pool of worker threads that
 *     zstd-decompress each chunk (exact length) and check its SHA-256; a
 *     worker writes the verified chunks that follow each other on the disk
 *     with one pwrite of up to OUT_MAX bytes, with O_DIRECT where the
 *     target takes it (see write_out()). At most MAX_BUFS ranges are in
 *     memory, so memory is bounded whatever the image size.
 *  7. After an fdatasync, the chunks covering the boot areas (first and last
 *     MiB: MBR/protective MBR, GPT header and entries, boot sector, backup
 *     GPT) are fetched and verified into memory, all of them, and only then
 *     written: the tail first, chunk 0 last. fsync.
 * Any failure stops at once with a message naming the chunk (index and
 * offset) or URL; the fetcher bounds every request's retries and stalls.
 *
 * Owns: the target fds, the worker threads, the fetcher. Never writes an
 * unverified byte to the target, never follows a non-http(s) URL. */
#include "agent/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <zstd.h>

#include "common/log.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "common/sign.h"
#include "common/util.h"

#define BOOT_AREA   (1024ULL * 1024) /* first and last MiB are written last */
#define RANGE_MAX   (4U * 1024 * 1024)
#define MAX_BUFS    8 /* ranges in flight or queued for the workers */
#define MAX_WORKERS 8
#define WORKER_MEM  (32U * 1024 * 1024) /* workers * their output buffer at most */
#define OUT_MAX     (2U * 1024 * 1024)  /* a worker's run of chunks written at once */
#define URL_MAX     4096
#define SIG_MAX     4096
#define MAX_PUBS    8

struct range {
	struct agent_xfer x;
	size_t first, n; /* chunk indices */
	uint64_t raw;    /* image bytes of its chunks (progress()) */
	struct range *qnext;
};

struct writer {
	const struct agent_image_opts *o;
	const struct img_manifest *m;
	int fd;
	int dfd; /* the same target opened O_DIRECT, or -1 */
	bool blk;
	uint64_t dev_size; /* the target's size: disk_size, or a larger device's */
	char **pack_urls;
	uint8_t *present;         /* per chunk: already on the target */
	size_t nhead, tail_start; /* boot chunks: [0, nhead) and [tail_start, n) */
	uint8_t **held;           /* phase 2: verified boot chunks, not yet written */
	bool hold;
	unsigned nworkers;
	struct agent_fetcher *f;

	/* Range buffers, allocated on first use and reused: a fresh buffer per
	 * range would fault in its pages again (measured: ~15% of the CPU of
	 * a full deploy). Live ranges never exceed MAX_BUFS (run_phase()). */
	uint8_t *bufs[MAX_BUFS], *free_bufs[MAX_BUFS];
	unsigned n_bufs, n_free; /* n_free under lock */
	size_t buf_size;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct range *qhead, *qtail;
	unsigned busy; /* ranges queued or being processed */
	bool stop;
	int error;
	char err[512];
	uint64_t bytes_done, bytes_total;
	size_t chunks_written;

	/* reimage hashing (hash_main()); hashed_upto and the counters under
	 * lock: chunks below hashed_upto have their final present[] */
	pthread_t hash_th[MAX_WORKERS];
	unsigned n_hash;
	size_t hash_next; /* atomic: the next batch to claim */
	uint8_t *hash_done;
	size_t hash_wm, hashed_upto, skipped_present;
	pthread_cond_t hcond;

	size_t cursor; /* planning */
	uint64_t t0, last_progress;
	/* Progress between verified ranges (fetch loop only): the stored and
	 * image bytes of the ranges the fetcher holds, so that a range still
	 * arriving counts in proportion to what it received (a slow link
	 * would otherwise show no movement until a whole 4 MiB range is
	 * verified). Never above verified + in flight, never going back. */
	uint64_t fl_stored, fl_raw, shown_done;
};

static void set_error(struct writer *w, int e, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void set_error(struct writer *w, int e, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&w->lock);
	if (!w->error) {
		w->error = e;
		va_start(ap, fmt);
		vsnprintf(w->err, sizeof(w->err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&w->lock);
}

static bool is_boot(const struct writer *w, size_t i)
{
	return i < w->nhead || i >= w->tail_start;
}

/* ---- zeroing -------------------------------------------------------------- */

static int write_zeros(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];

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

/* Makes [off, off+len) read back as zeros. */
static int zero_range(const struct writer *w, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	if (w->blk) {
		uint64_t r[2] = { off, len };

		if (ioctl(w->fd, BLKZEROOUT, r) == 0)
			return 0;
		if (errno != EOPNOTSUPP && errno != EINVAL && errno != ENOTTY)
			return -errno;
	} else {
		if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		              (off_t)len) == 0)
			return 0;
		if (errno != EOPNOTSUPP)
			return -errno;
	}
	return write_zeros(w->fd, off, len);
}

/* ---- chunk verification ----------------------------------------------------- */

/* Decompresses chunk i from src (its stored bytes) into out (chunk_size
 * bytes) and checks length and SHA-256. */
static int decode_chunk(struct writer *w, ZSTD_DCtx *dctx, size_t i, const uint8_t *src,
                        uint8_t *out)
{
	const struct img_chunk *c = &w->m->chunks[i];
	uint8_t sum[RB_SHA256_LEN];
	size_t k;

	k = ZSTD_decompressDCtx(dctx, out, w->m->chunk_size, src, c->stored_len);
	if (ZSTD_isError(k) || k != c->length) {
		set_error(w, -EBADMSG, "chunk %zu (offset %llu, pack %s at %llu): %s", i,
		          (unsigned long long)c->offset, w->m->packs[c->pack].id,
		          (unsigned long long)c->pack_offset,
		          ZSTD_isError(k) ? ZSTD_getErrorName(k) : "wrong decompressed length");
		return -EBADMSG;
	}
	rb_sha256(out, c->length, sum);
	if (memcmp(sum, c->sha256, sizeof(sum)) != 0) {
		set_error(w, -EBADMSG, "chunk %zu (offset %llu, pack %s at %llu): sha256 mismatch",
		          i, (unsigned long long)c->offset, w->m->packs[c->pack].id,
		          (unsigned long long)c->pack_offset);
		return -EBADMSG;
	}
	return 0;
}

static size_t held_index(const struct writer *w, size_t i)
{
	return i < w->nhead ? i : w->nhead + (i - w->tail_start);
}

/* A range buffer (main thread): a free one, or a new one while fewer than
 * MAX_BUFS exist. Each holds any range (see setup()). */
static uint8_t *buf_get(struct writer *w)
{
	uint8_t *b = NULL;

	pthread_mutex_lock(&w->lock);
	if (w->n_free)
		b = w->free_bufs[--w->n_free];
	pthread_mutex_unlock(&w->lock);
	if (!b && w->n_bufs < MAX_BUFS && (b = malloc(w->buf_size)))
		w->bufs[w->n_bufs++] = b;
	return b;
}

static void buf_put(struct writer *w, uint8_t *b)
{
	pthread_mutex_lock(&w->lock);
	w->free_bufs[w->n_free++] = b;
	pthread_mutex_unlock(&w->lock);
}

/* A worker's verified chunks that follow each other on the disk, not yet
 * written: one large write instead of one per chunk. */
struct outbuf {
	uint8_t *buf; /* page-aligned, for O_DIRECT */
	size_t cap, len;
	uint64_t off;
	size_t first, n; /* chunk indices */
};

static size_t outbuf_cap(uint32_t chunk_size)
{
	return RB_MAX((size_t)chunk_size, (size_t)OUT_MAX);
}

/* Writes verified bytes with O_DIRECT where the target takes it: no copy
 * into the page cache and no dirty-page throttling, which on a whole-disk
 * write cost more than decompressing and hashing. What O_DIRECT refuses
 * (EINVAL: an alignment the device does not take, e.g. a 512-byte tail on
 * a 4Kn disk) goes through the buffered fd. */
static int write_out(const struct writer *w, const uint8_t *p, size_t len, uint64_t off)
{
	while (w->dfd >= 0 && len > 0) {
		ssize_t k = pwrite(w->dfd, p, len, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno != EINVAL)
			return -errno;
		if (k <= 0)
			break;
		p += k;
		len -= (size_t)k;
		off += (uint64_t)k;
	}
	return len ? rb_pwrite_all(w->fd, p, len, off) : 0;
}

static int flush_out(struct writer *w, struct outbuf *b)
{
	int e;

	if (b->len == 0)
		return 0;
	e = write_out(w, b->buf, b->len, b->off);
	if (e < 0) {
		set_error(w, e, "chunks %zu-%zu (offset %llu): writing %s: %s", b->first,
		          b->first + b->n - 1, (unsigned long long)b->off, w->o->target,
		          strerror(-e));
		return e;
	}
	pthread_mutex_lock(&w->lock);
	w->bytes_done += b->len;
	w->chunks_written += b->n;
	pthread_mutex_unlock(&w->lock);
	b->len = 0;
	b->n = 0;
	return 0;
}

static int process_range(struct writer *w, ZSTD_DCtx *dctx, struct outbuf *b, struct range *r)
{
	for (size_t i = r->first; i < r->first + r->n; i++) {
		const struct img_chunk *c = &w->m->chunks[i];
		const uint8_t *src = r->x.buf + (c->pack_offset - r->x.offset);
		int e;

		pthread_mutex_lock(&w->lock);
		e = w->error;
		pthread_mutex_unlock(&w->lock);
		if (e)
			return e;
		if (b->len &&
		    (c->offset != b->off + b->len || b->cap - b->len < w->m->chunk_size) &&
		    (e = flush_out(w, b)) < 0)
			return e;
		if (b->len == 0) {
			b->off = c->offset;
			b->first = i;
		}
		e = decode_chunk(w, dctx, i, src, b->buf + b->len);
		if (e < 0)
			return e;
		if (w->hold) {
			uint8_t *copy = malloc(c->length);

			if (!copy) {
				set_error(w, -ENOMEM, "chunk %zu: out of memory", i);
				return -ENOMEM;
			}
			memcpy(copy, b->buf, c->length);
			w->held[held_index(w, i)] = copy;
			pthread_mutex_lock(&w->lock);
			w->bytes_done += c->length;
			pthread_mutex_unlock(&w->lock);
			continue;
		}
		b->len += c->length;
		b->n++;
	}
	return flush_out(w, b);
}

static void *worker_main(void *arg)
{
	struct writer *w = arg;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	struct outbuf b = { .cap = outbuf_cap(w->m->chunk_size) };

	if (posix_memalign((void **)&b.buf, 4096, b.cap) != 0)
		b.buf = NULL;
	if (!dctx || !b.buf)
		set_error(w, -ENOMEM, "worker: out of memory");
	for (;;) {
		struct range *r;

		pthread_mutex_lock(&w->lock);
		while (!w->qhead && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		r = w->qhead;
		if (!r) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		w->qhead = r->qnext;
		if (!w->qhead)
			w->qtail = NULL;
		pthread_mutex_unlock(&w->lock);

		if (dctx && b.buf)
			process_range(w, dctx, &b, r);
		buf_put(w, r->x.buf);
		free(r);
		pthread_mutex_lock(&w->lock);
		w->busy--;
		pthread_mutex_unlock(&w->lock);
		agent_fetcher_wakeup(w->f);
	}
	ZSTD_freeDCtx(dctx);
	free(b.buf);
	return NULL;
}

/* ---- reimage: what is already on the target ------------------------------- */

/* Hash threads claim HASH_BATCH chunks at a time, in disk order, and read
 * each run of adjacent chunks with one pread. They run while the fetch
 * loop plans: every batch done from the start moves hashed_upto, and the
 * planner fetches chunks below it that did not match, so downloading the
 * changed chunks overlaps hashing the rest (it used to wait for the whole
 * disk to be hashed first). */
#define HASH_BATCH 32

static void *hash_main(void *arg)
{
	struct writer *w = arg;
	const struct img_manifest *m = w->m;
	size_t nb = (m->n_chunks + HASH_BATCH - 1) / HASH_BATCH;
	size_t cap = RB_MAX((size_t)OUT_MAX, (size_t)m->chunk_size);
	uint8_t *buf = malloc(cap);
	uint8_t sum[RB_SHA256_LEN];

	if (!buf) {
		set_error(w, -ENOMEM, "reimage: out of memory");
		return NULL;
	}
	for (;;) {
		size_t b = __atomic_fetch_add(&w->hash_next, 1, __ATOMIC_RELAXED);
		size_t end = RB_MIN((b + 1) * HASH_BATCH, m->n_chunks);
		uint64_t found_bytes = 0;
		size_t found = 0;
		bool quit;

		if (b >= nb)
			break;
		pthread_mutex_lock(&w->lock);
		quit = w->stop || w->error;
		pthread_mutex_unlock(&w->lock);
		if (quit)
			break;
		for (size_t i = b * HASH_BATCH; i < end;) {
			const struct img_chunk *c = &m->chunks[i];
			size_t j = i + 1;
			uint64_t len = c->length;
			int e;

			if (is_boot(w, i)) {
				i++;
				continue;
			}
			while (j < end && !is_boot(w, j) &&
			       m->chunks[j].offset == c->offset + len &&
			       len + m->chunks[j].length <= cap)
				len += m->chunks[j++].length;
			e = rb_pread_all(w->fd, buf, (size_t)len, c->offset);
			if (e < 0) {
				set_error(w, e, "reimage: reading %s at %llu: %s", w->o->target,
				          (unsigned long long)c->offset, strerror(-e));
				goto out;
			}
			for (size_t k = i; k < j; k++) {
				const struct img_chunk *d = &m->chunks[k];

				rb_sha256(buf + (d->offset - c->offset), d->length, sum);
				if (memcmp(sum, d->sha256, sizeof(sum)) == 0) {
					w->present[k] = 1;
					found++;
					found_bytes += d->length;
				}
			}
			i = j;
		}
		pthread_mutex_lock(&w->lock);
		w->hash_done[b] = 1;
		w->skipped_present += found;
		w->bytes_done += found_bytes;
		while (w->hash_wm < nb && w->hash_done[w->hash_wm])
			w->hash_wm++;
		w->hashed_upto = RB_MIN(w->hash_wm * HASH_BATCH, m->n_chunks);
		pthread_cond_broadcast(&w->hcond);
		pthread_mutex_unlock(&w->lock);
	}
out:
	free(buf);
	return NULL;
}

/* Starts hashing what the target holds (reimage); without --reimage
 * nothing is present and every chunk is final at once. */
static int hash_start(struct writer *w)
{
	size_t nb = (w->m->n_chunks + HASH_BATCH - 1) / HASH_BATCH;

	if (!w->o->reimage) {
		w->hashed_upto = w->m->n_chunks;
		return 0;
	}
	w->hash_done = calloc(nb ? nb : 1, 1);
	if (!w->hash_done)
		return -ENOMEM;
	for (unsigned k = 0; k < w->nworkers; k++)
		if (pthread_create(&w->hash_th[w->n_hash], NULL, hash_main, w) == 0)
			w->n_hash++;
	if (w->n_hash == 0)
		hash_main(w);
	return 0;
}

static void hash_join(struct writer *w)
{
	for (unsigned k = 0; k < w->n_hash; k++)
		pthread_join(w->hash_th[k], NULL);
	w->n_hash = 0;
}

/* ---- planning and the fetch loop ------------------------------------------- */

static bool wanted(const struct writer *w, size_t i, bool boot_phase)
{
	return !w->present[i] && is_boot(w, i) == boot_phase;
}

/* Next run of wanted chunks stored back to back in one pack. */
static struct range *next_range(struct writer *w, bool boot_phase, int *ret_err)
{
	const struct img_manifest *m = w->m;
	const struct img_chunk *c;
	struct range *r;
	uint64_t end;
	size_t i = w->cursor, j, limit;

	*ret_err = 0;
	pthread_mutex_lock(&w->lock);
	limit = w->hashed_upto;
	pthread_mutex_unlock(&w->lock);
	while (i < limit && !wanted(w, i, boot_phase))
		i++;
	if (i >= limit) {
		w->cursor = i;
		if (i < m->n_chunks)
			*ret_err = -EAGAIN; /* not hashed yet */
		return NULL;
	}
	c = &m->chunks[i];
	end = c->pack_offset + c->stored_len;
	for (j = i + 1; j < limit && wanted(w, j, boot_phase); j++) {
		const struct img_chunk *d = &m->chunks[j];

		if (d->pack != c->pack || d->pack_offset != end ||
		    end + d->stored_len - c->pack_offset > RANGE_MAX)
			break;
		end += d->stored_len;
	}
	w->cursor = j;
	r = calloc(1, sizeof(*r));
	if (r)
		r->x.buf = buf_get(w);
	if (!r || !r->x.buf) {
		free(r);
		*ret_err = -ENOMEM;
		return NULL;
	}
	r->first = i;
	r->n = j - i;
	for (size_t k = i; k < j; k++)
		r->raw += m->chunks[k].length;
	r->x.url = w->pack_urls[c->pack];
	r->x.offset = c->pack_offset;
	r->x.length = (size_t)(end - c->pack_offset);
	r->x.user = r;
	return r;
}

static void progress(struct writer *w, bool final)
{
	uint64_t now = rb_now_usec(), done, total, got = 0;
	double secs, rate;
	bool tty = isatty(STDERR_FILENO);

	if (w->f && w->fl_stored)
		got = RB_MIN(agent_fetcher_in_flight(w->f), w->fl_stored);
	pthread_mutex_lock(&w->lock);
	done = w->bytes_done;
	total = w->bytes_total;
	pthread_mutex_unlock(&w->lock);
	if (w->fl_stored)
		done += got * w->fl_raw / w->fl_stored;
	done = RB_MIN(RB_MAX(done, w->shown_done), total);
	w->shown_done = done;
	if (w->o->progress_cb)
		w->o->progress_cb(w->o->progress_arg, done, total);
	if (!w->o->progress)
		return;
	if (!final && now - w->last_progress < (tty ? 500000ULL : 5000000ULL))
		return;
	w->last_progress = now;
	secs = (double)(now - w->t0) / 1e6;
	rate = secs > 0 ? (double)done / secs : 0;
	fprintf(stderr, "%simage: %.1f / %.1f MiB (%.0f%%), %.1f MiB/s, ETA %.0f s%s",
	        tty ? "\r" : "", (double)done / 1048576, (double)total / 1048576,
	        total ? 100.0 * (double)done / (double)total : 100.0, rate / 1048576,
	        rate > 0 ? (double)(total - done) / rate : 0.0, tty && !final ? "   " : "\n");
}

static void free_range(struct writer *w, struct range *r)
{
	buf_put(w, r->x.buf);
	free(r);
}

/* The first chunk of a failed range whose stored bytes did not all arrive:
 * the one to name, not the range's first (a range spans up to RANGE_MAX). */
static size_t first_missing(const struct writer *w, const struct range *r)
{
	uint64_t end = r->x.offset + r->x.got;
	size_t i = r->first;

	while (i + 1 < r->first + r->n &&
	       w->m->chunks[i].pack_offset + w->m->chunks[i].stored_len <= end)
		i++;
	return i;
}

/* Waits (up to 50 ms) until chunk i is hashed or something failed. */
static void wait_hashed(struct writer *w, size_t i)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 50 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	while (w->hashed_upto <= i && !w->error && !w->stop)
		if (pthread_cond_timedwait(&w->hcond, &w->lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&w->lock);
}

/* Fetches every wanted chunk of the phase and hands it to the workers. */
static int run_phase(struct writer *w, bool boot_phase)
{
	const unsigned par = w->o->fetch.parallel;
	bool planned = false;
	int e;

	w->cursor = 0;
	w->hold = boot_phase;
	for (;;) {
		struct agent_xfer *x;
		bool waiting = false; /* for the hash threads (reimage) */
		unsigned busy;
		int err;

		pthread_mutex_lock(&w->lock);
		busy = w->busy;
		err = w->error;
		pthread_mutex_unlock(&w->lock);
		if (err)
			break;
		while (!planned && agent_fetcher_pending(w->f) < par &&
		       agent_fetcher_pending(w->f) + busy < MAX_BUFS) {
			struct range *r = next_range(w, boot_phase, &e);

			if (!r && e == -EAGAIN) {
				waiting = true;
				break;
			}
			if (!r && e < 0) {
				set_error(w, e, "out of memory");
				break;
			}
			if (!r) {
				planned = true;
				break;
			}
			e = agent_fetcher_add(w->f, &r->x);
			if (e < 0) {
				set_error(w, e, "%s: cannot start a request: %s", r->x.url,
				          strerror(-e));
				free_range(w, r);
				break;
			}
			w->fl_stored += r->x.length;
			w->fl_raw += r->raw;
		}
		if (planned && busy == 0 && agent_fetcher_pending(w->f) == 0)
			break;
		if (waiting && agent_fetcher_pending(w->f) == 0) {
			wait_hashed(w, w->cursor);
			progress(w, false);
			continue;
		}
		e = agent_fetcher_poll(w->f, waiting ? 10 : 250, &x);
		if (e < 0) {
			set_error(w, e, "curl multi: %s", strerror(-e));
			break;
		}
		if (x) {
			struct range *r = x->user;

			w->fl_stored -= r->x.length;
			w->fl_raw -= r->raw;
			if (x->error) {
				size_t k = first_missing(w, r);
				const struct img_chunk *c = &w->m->chunks[k];

				set_error(w, x->error,
				          "chunk %zu (offset %llu, pack bytes %llu-%llu): %s "
				          "bytes %llu-%llu: %s",
				          k, (unsigned long long)c->offset,
				          (unsigned long long)c->pack_offset,
				          (unsigned long long)(c->pack_offset + c->stored_len - 1),
				          x->url, (unsigned long long)x->offset,
				          (unsigned long long)(x->offset + x->length - 1),
				          x->errmsg);
				free_range(w, r);
				break;
			}
			pthread_mutex_lock(&w->lock);
			r->qnext = NULL;
			if (w->qtail)
				w->qtail->qnext = r;
			else
				w->qhead = r;
			w->qtail = r;
			w->busy++;
			pthread_cond_signal(&w->cond);
			pthread_mutex_unlock(&w->lock);
		}
		progress(w, false);
	}
	/* Let the workers drain (after an error they skip the work). */
	for (;;) {
		unsigned busy;

		pthread_mutex_lock(&w->lock);
		busy = w->busy;
		pthread_mutex_unlock(&w->lock);
		if (busy == 0)
			break;
		usleep(10000);
	}
	return w->error;
}

/* ---- target ------------------------------------------------------------------ */

static int open_target(struct writer *w, bool *ret_fresh, char *err, size_t errlen)
{
	const struct agent_image_opts *o = w->o;
	struct stat st;
	int fd;

	fd = open(o->target, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = -errno;

		snprintf(err, errlen, "%s: %s", o->target, strerror(errno));
		if (fd >= 0)
			close(fd);
		return e;
	}
	w->fd = fd;
	w->blk = S_ISBLK(st.st_mode);
	*ret_fresh = false;
	if (w->blk) {
		uint64_t size = 0;

		if (ioctl(fd, BLKGETSIZE64, &size) < 0 || size < w->m->disk_size) {
			snprintf(err, errlen, "%s: device has %llu bytes, the image needs %llu",
			         o->target, (unsigned long long)size,
			         (unsigned long long)w->m->disk_size);
			return -ENOSPC;
		}
		w->dev_size = size;
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file or block device", o->target);
		return -EINVAL;
	}
	if (!o->reimage && ftruncate(fd, 0) < 0)
		goto fail;
	if (ftruncate(fd, (off_t)w->m->disk_size) < 0)
		goto fail;
	w->dev_size = w->m->disk_size;
	*ret_fresh = !o->reimage;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", o->target, strerror(errno));
	return -errno;
}

/* A second open file description of the target, with O_DIRECT (reopened
 * through /proc/self/fd: the same file whatever became of the path). Left
 * at -1 where that fails (no /proc, tmpfs): writes are then buffered. */
static void open_direct(struct writer *w)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", w->fd);
	w->dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
}

/* Plain file: allocates the blocks the data phase writes, run by run
 * (unwritten extents read as zeros; ranges without data stay holes).
 * ext4 takes an O_DIRECT write into allocated blocks under a shared inode
 * lock, into a hole under the exclusive lock until the disk answers, so
 * without this the workers' writes go one at a time (measured: a 2 GiB
 * deploy about 10% slower). Best effort: where fallocate fails the writes
 * allocate as they go and report any real error themselves. */
static void preallocate(const struct writer *w)
{
	const struct img_manifest *m = w->m;
	uint64_t start = 0, end = 0;

	if (w->blk || w->dfd < 0)
		return;
	for (size_t i = 0; i <= m->n_chunks; i++) {
		const struct img_chunk *c = i < m->n_chunks ? &m->chunks[i] : NULL;

		if (c && (w->present[i] || is_boot(w, i)))
			continue;
		if (c && c->offset == end && end > start) {
			end += c->length;
			continue;
		}
		if (end > start && fallocate(w->fd, 0, (off_t)start, (off_t)(end - start)) < 0)
			return;
		if (c) {
			start = c->offset;
			end = start + c->length;
		}
	}
}

/* Zeroes the ranges the manifest does not store. */
static int zero_gaps(struct writer *w)
{
	uint64_t pos = 0;
	int e;

	for (size_t i = 0; i <= w->m->n_chunks; i++) {
		uint64_t start = i < w->m->n_chunks ? w->m->chunks[i].offset : w->m->disk_size;

		if (start > pos && (e = zero_range(w, pos, start - pos)) < 0) {
			set_error(w, e, "zeroing %s at %llu: %s", w->o->target,
			          (unsigned long long)pos, strerror(-e));
			return e;
		}
		if (i < w->m->n_chunks)
			pos = w->m->chunks[i].offset + w->m->chunks[i].length;
	}
	return 0;
}

static int write_held(struct writer *w)
{
	const struct img_manifest *m = w->m;
	int e;

	/* Tail first, then the head from its end, chunk 0 last. */
	for (size_t i = w->tail_start; i < m->n_chunks; i++) {
		const struct img_chunk *c = &m->chunks[i];

		if ((e = rb_pwrite_all(w->fd, w->held[held_index(w, i)], c->length, c->offset)) < 0)
			goto fail;
		w->chunks_written++;
	}
	for (size_t i = w->nhead; i-- > 0;) {
		const struct img_chunk *c = &m->chunks[i];

		if ((e = rb_pwrite_all(w->fd, w->held[held_index(w, i)], c->length, c->offset)) < 0)
			goto fail;
		w->chunks_written++;
	}
	return 0;
fail:
	set_error(w, e, "writing the boot areas of %s: %s", w->o->target, strerror(-e));
	return e;
}

/* ---- the whole write ----------------------------------------------------- */

static int load_manifest(const struct agent_image_opts *o, struct img_manifest **ret,
                         struct agent_image_stats *st, char *err, size_t errlen)
{
	char url[URL_MAX], surl[URL_MAX + 8], perr[256];
	char *data = NULL, *sig = NULL;
	size_t len, slen;
	int e;

	snprintf(url, sizeof(url), "%s/images/%s/%s.manifest.json", o->repo, o->name, o->version);
	snprintf(surl, sizeof(surl), "%s.sig", url);
	e = agent_fetch_small(url, IMG_MANIFEST_MAX_SIZE, &o->fetch, &data, &len, &st->requests,
	                      err, errlen);
	if (e < 0)
		return e;
	st->fetched_bytes += len;
	e = agent_fetch_small(surl, SIG_MAX, &o->fetch, &sig, &slen, &st->requests, err, errlen);
	if (e < 0)
		goto out;
	st->fetched_bytes += slen;
	e = rb_verify(o->pubs, o->n_pubs, data, len, sig, slen);
	if (e < 0) {
		snprintf(err, errlen, "%s: %s", surl,
		         e == -EINVAL ? "malformed signature"
		                      : "signature does not verify with any trusted key");
		goto out;
	}
	e = img_manifest_parse(data, len, ret, perr, sizeof(perr));
	if (e < 0) {
		snprintf(err, errlen, "%s: %s", url, perr);
		goto out;
	}
	if (strcmp((*ret)->name, o->name) != 0 || strcmp((*ret)->version, o->version) != 0) {
		snprintf(err, errlen, "%s: manifest is for %s %s", url, (*ret)->name,
		         (*ret)->version);
		img_manifest_free(*ret);
		*ret = NULL;
		e = -EBADMSG;
	}
out:
	free(data);
	free(sig);
	return e;
}

static unsigned worker_count(uint32_t chunk_size)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned k = n < 1 ? 1 : (unsigned)RB_MIN(n, (long)MAX_WORKERS);

	while (k > 1 && (uint64_t)k * outbuf_cap(chunk_size) > WORKER_MEM)
		k--;
	return k;
}

static int setup(struct writer *w)
{
	const struct img_manifest *m = w->m;
	uint64_t tail = m->disk_size > BOOT_AREA ? m->disk_size - BOOT_AREA : 0;

	/* A range is one chunk, or chunks up to RANGE_MAX stored bytes. */
	w->buf_size = RB_MAX((size_t)RANGE_MAX, ZSTD_compressBound(m->chunk_size));
	w->pack_urls = calloc(m->n_packs, sizeof(char *));
	w->present = calloc(m->n_chunks ? m->n_chunks : 1, 1);
	if (!w->pack_urls || !w->present)
		return -ENOMEM;
	for (size_t p = 0; p < m->n_packs; p++) {
		size_t n = strlen(w->o->repo) + 80;

		w->pack_urls[p] = malloc(n);
		if (!w->pack_urls[p])
			return -ENOMEM;
		snprintf(w->pack_urls[p], n, "%s/packs/%s.pack", w->o->repo, m->packs[p].id);
	}
	while (w->nhead < m->n_chunks && m->chunks[w->nhead].offset < BOOT_AREA)
		w->nhead++;
	w->tail_start = m->n_chunks;
	while (w->tail_start > w->nhead &&
	       m->chunks[w->tail_start - 1].offset + m->chunks[w->tail_start - 1].length > tail)
		w->tail_start--;
	w->held = calloc(w->nhead + (m->n_chunks - w->tail_start) + 1, sizeof(uint8_t *));
	return w->held ? 0 : -ENOMEM;
}

/* Ranges left in the fetcher after a failure; their buffers go with the
 * pool. */
static void release_xfer(struct agent_xfer *x)
{
	free(x->user);
}

static void teardown(struct writer *w, pthread_t *th, unsigned nth)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	hash_join(w);
	for (unsigned k = 0; k < nth; k++)
		pthread_join(th[k], NULL);
	agent_fetcher_free(w->f, release_xfer);
	for (unsigned k = 0; k < w->n_bufs; k++)
		free(w->bufs[k]);
	for (size_t p = 0; w->pack_urls && p < w->m->n_packs; p++)
		free(w->pack_urls[p]);
	free(w->pack_urls);
	for (size_t k = 0; w->held && k < w->nhead + (w->m->n_chunks - w->tail_start); k++)
		free(w->held[k]);
	free(w->held);
	free(w->present);
	free(w->hash_done);
	if (w->fd >= 0)
		close(w->fd);
	if (w->dfd >= 0)
		close(w->dfd);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->hcond);
}

int agent_image_write(const struct agent_image_opts *o, struct agent_image_stats *ret_stats,
                      char *err, size_t errlen)
{
	struct agent_image_stats st = { 0 };
	struct img_manifest *m = NULL;
	struct writer w = { .o = o, .fd = -1, .dfd = -1 };
	pthread_t th[MAX_WORKERS];
	unsigned nth = 0;
	uint64_t t0 = rb_now_usec();
	bool fresh = false;
	int e;

	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	pthread_cond_init(&w.hcond, NULL);
	if (!agent_url_is_http(o->repo)) {
		snprintf(err, errlen, "%s: only http:// and https:// repositories", o->repo);
		e = -EPROTO;
		goto out_early;
	}
	if (!img_name_is_valid(o->name) || !img_name_is_valid(o->version)) {
		snprintf(err, errlen, "invalid image name or version");
		e = -EINVAL;
		goto out_early;
	}
	e = load_manifest(o, &m, &st, err, errlen);
	if (e < 0)
		goto out_early;
	w.m = m;
	e = setup(&w);
	if (e == 0)
		e = agent_fetcher_new(&o->fetch, &w.f);
	if (e < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	w.nworkers = worker_count(m->chunk_size);
	e = open_target(&w, &fresh, err, errlen);
	if (e < 0)
		goto out;
	open_direct(&w);
	/* From here on the target holds no valid partition table until the end. */
	if (!fresh) {
		uint64_t head = RB_MIN(BOOT_AREA, m->disk_size);
		uint64_t tail = m->disk_size - head;
		/* A device larger than the image may hold a larger disk's
		 * backup GPT in its own last sectors: it goes too. */
		uint64_t dtail = RB_MAX(m->disk_size, w.dev_size - RB_MIN(BOOT_AREA, w.dev_size));

		if ((e = zero_range(&w, 0, head)) < 0 ||
		    (e = zero_range(&w, tail, m->disk_size - tail)) < 0 ||
		    (e = zero_range(&w, dtail, w.dev_size - dtail)) < 0 || fdatasync(w.fd) < 0) {
			e = e < 0 ? e : -errno;
			set_error(&w, e, "clearing the boot areas of %s: %s", o->target,
			          strerror(-e));
			goto out_err;
		}
		if (zero_gaps(&w) < 0)
			goto out_err;
	}
	if (!o->reimage)
		preallocate(&w);
	/* Progress counts every chunk: written, or found on the disk. */
	for (size_t i = 0; i < m->n_chunks; i++)
		w.bytes_total += m->chunks[i].length;
	w.t0 = rb_now_usec();
	if (hash_start(&w) < 0) {
		set_error(&w, -ENOMEM, "reimage: out of memory");
		goto out_err;
	}
	for (; nth < w.nworkers; nth++)
		if (pthread_create(&th[nth], NULL, worker_main, &w) != 0)
			break;
	if (nth == 0) {
		set_error(&w, -EAGAIN, "cannot start worker threads");
		goto out_err;
	}
	if (run_phase(&w, false) < 0)
		goto out_err;
	hash_join(&w);
	st.skipped_present = w.skipped_present;
	if (fdatasync(w.fd) < 0) {
		set_error(&w, -errno, "fdatasync %s: %s", o->target, strerror(errno));
		goto out_err;
	}
	if (run_phase(&w, true) < 0 || write_held(&w) < 0)
		goto out_err;
	if (fsync(w.fd) < 0) {
		set_error(&w, -errno, "fsync %s: %s", o->target, strerror(errno));
		goto out_err;
	}
	progress(&w, true);
	{
		unsigned req;
		uint64_t bytes;

		agent_fetcher_stats(w.f, &req, &bytes);
		st.requests += req;
		st.fetched_bytes += bytes;
	}
	st.chunks_written = w.chunks_written;
	st.skipped_zero = (m->disk_size + m->chunk_size - 1) / m->chunk_size - m->n_chunks;
	st.usec = rb_now_usec() - t0;
	*ret_stats = st;
	e = 0;
	goto out;
out_err:
	e = w.error ? w.error : -EIO;
	snprintf(err, errlen, "%s", w.err);
out:
	if (e < 0 && o->progress && w.t0)
		fputc('\n', stderr);
	teardown(&w, th, nth);
	img_manifest_free(m);
	return e;
out_early:
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	pthread_cond_destroy(&w.hcond);
	return e;
}

/* ---- the command ------------------------------------------------------------ */

static void usage(FILE *o)
{
	fputs("usage: rackboot-agent image --repo URL --pub KEYFILE [--pub KEYFILE...]\n"
	      "                            --name NAME --version VERSION --target PATH\n"
	      "                            [--reimage] [--timeout-s N] [--retries N]\n"
	      "                            [--parallel N] [--max-rate BYTES_PER_S]\n"
	      "                            [--allow-host HOST[:PORT]...] [-q]\n"
	      "Writes a signed image from the repository onto PATH (file or block device).\n"
	      "  --allow-host H another host the repository may redirect to (repeatable;\n"
	      "                 without a port: any port); others are refused\n"
	      "  --reimage      hash what PATH holds and fetch only the chunks that differ\n"
	      "  --timeout-s N  connect timeout and low-speed abort window (default 30)\n"
	      "  --retries N    extra attempts per request (default 4)\n"
	      "  --parallel N   range requests at once (default 4, at most 16)\n"
	      "  --max-rate B   bytes/s per transfer (default unlimited)\n"
	      "  -q, --quiet    no progress on stderr\n"
	      "Exit: 0 written and verified, 1 failure (reason on stderr), 2 usage.\n",
	      o);
}

static int num_opt(const char *name, const char *s, long long min, long long max, long long *ret)
{
	if (rb_strtonum(s, min, max, ret) < 0) {
		fprintf(stderr, "rackboot-agent image: %s: expected a number in [%lld, %lld]\n",
		        name, min, max);
		return -EINVAL;
	}
	return 0;
}

int agent_cmd_image(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "pub", required_argument, NULL, 'p' },
		{ "name", required_argument, NULL, 'n' },
		{ "version", required_argument, NULL, 'V' },
		{ "target", required_argument, NULL, 't' },
		{ "reimage", no_argument, NULL, 'R' },
		{ "timeout-s", required_argument, NULL, 'T' },
		{ "retries", required_argument, NULL, 'N' },
		{ "parallel", required_argument, NULL, 'P' },
		{ "max-rate", required_argument, NULL, 'M' },
		{ "allow-host", required_argument, NULL, 'A' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_image_opts o = {
		.progress = true,
		.fetch = { .timeout_s = 30, .retries = 4, .parallel = 4 },
	};
	struct rb_key *keys[MAX_PUBS];
	struct agent_image_stats st;
	const char *pubs[MAX_PUBS], *allow[AGENT_HOSTS_MAX];
	struct agent_hosts hosts;
	size_t n_pubs = 0, n_keys = 0, n_allow = 0;
	char repo[URL_MAX], err[768];
	long long v;
	int c, e, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (strlen(optarg) >= sizeof(repo) - 128) {
				fputs("rackboot-agent image: --repo URL too long\n", stderr);
				return 2;
			}
			snprintf(repo, sizeof(repo), "%s", optarg);
			while (strlen(repo) > 0 && repo[strlen(repo) - 1] == '/')
				repo[strlen(repo) - 1] = '\0';
			o.repo = repo;
			break;
		case 'p':
			if (n_pubs == MAX_PUBS) {
				fprintf(stderr, "rackboot-agent image: at most %d --pub\n",
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
		case 'R':
			o.reimage = true;
			break;
		case 'T':
			if (num_opt("--timeout-s", optarg, 1, 3600, &v) < 0)
				return 2;
			o.fetch.timeout_s = (unsigned)v;
			break;
		case 'N':
			if (num_opt("--retries", optarg, 0, 100, &v) < 0)
				return 2;
			o.fetch.retries = (unsigned)v;
			break;
		case 'P':
			if (num_opt("--parallel", optarg, 1, 16, &v) < 0)
				return 2;
			o.fetch.parallel = (unsigned)v;
			break;
		case 'M':
			if (num_opt("--max-rate", optarg, 0, 1LL << 40, &v) < 0)
				return 2;
			o.fetch.max_recv_speed = (uint64_t)v;
			break;
		case 'A':
			if (n_allow == AGENT_HOSTS_MAX - 1) {
				fprintf(stderr, "rackboot-agent image: at most %d --allow-host\n",
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
		fputs("rackboot-agent image: --name/--version: [A-Za-z0-9._+-]{1,64}\n", stderr);
		return 2;
	}
	if (agent_hosts_build(&hosts, o.repo, allow, n_allow, AGENT_HOSTS_HINT_CMD, err,
	                      sizeof(err)) < 0) {
		fprintf(stderr, "rackboot-agent image: %s\n", err);
		return 2;
	}
	o.fetch.hosts = &hosts;
	e = rb_keys_load_public((const char *const *)pubs, n_pubs, keys, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "rackboot-agent image: %s\n", err);
		goto out;
	}
	n_keys = n_pubs;
	o.pubs = (const struct rb_key *const *)keys;
	o.n_pubs = n_keys;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("rackboot-agent image: libcurl initialisation failed\n", stderr);
		goto out;
	}
	e = agent_image_write(&o, &st, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "rackboot-agent image: failed: %s\n", err);
	} else {
		printf("image %s %s written to %s: fetched_bytes=%llu requests=%u "
		       "chunks_written=%zu skipped_zero=%llu skipped_present=%zu seconds=%.3f\n",
		       o.name, o.version, o.target, (unsigned long long)st.fetched_bytes,
		       st.requests, st.chunks_written, (unsigned long long)st.skipped_zero,
		       st.skipped_present, (double)st.usec / 1e6);
		rc = 0;
	}
	curl_global_cleanup();
out:
	for (size_t k = 0; k < n_keys; k++)
		rb_key_free(keys[k]);
	return rc;
}
