/* Build pipeline: raw disk image -> deduplicated, compressed chunks in pack
 * files -> signed manifest, published atomically (repo.c).
 *
 * Threads: N workers, each claiming the next batch of chunks in disk order
 * and doing all per-chunk work on it (pread in chunk_size pieces, holes of
 * sparse files skipped with SEEK_DATA, zero check, SHA-256, one zstd frame
 * per chunk), and the calling thread as the writer (in disk order: the
 * source hash over the chunk hashes, dedup against every chunk of the
 * repository and of this build, append to the current pack in .tmp/,
 * rename full packs into packs/). They share a ring of a fixed number of
 * slots, so memory is bounded by RING_BATCHES * WORK_BATCH * (N + 1) *
 * (chunk_size + compressBound) whatever the disk size. One mutex guards
 * the ring; a batch of 8 chunks of 64 KiB is ~1 ms of work, so the lock is
 * not the limit.
 *
 * Every byte of the image is hashed once (per chunk); source_sha256 is the
 * SHA-256 of the list of chunk hashes (docs/formats.md), so it costs 32
 * bytes of hashing per chunk instead of a second pass over the disk.
 *
 * Must never: publish a manifest whose packs are not all renamed into
 * packs/ and fsynced, or hold more than the ring's slots in memory. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "chunker.h"
#include "partitions.h"
#include "common/sha256.h"
#include "common/util.h"

enum { SLOT_FREE, SLOT_DONE };
#define WORK_BATCH       8 /* chunks a worker takes at once */
#define PACK_FLUSH_BYTES (2u << 20)
#define RING_BATCHES     4 /* per worker (+1): lets workers run ahead of the writer */

struct slot {
	int state;
	bool zero;
	uint32_t len;
	uint8_t *in, *out;
	size_t out_len;
	uint8_t sha[32];
};

/* A pack known to this build: from an existing manifest or written now. */
struct bpack {
	char id[65]; /* empty while it is being written */
	uint64_t size;
	int64_t mindex; /* index in the new manifest, -1 until referenced */
};

struct hentry {
	uint8_t sha[32];
	uint32_t pack; /* index into bpacks; UINT32_MAX = empty slot */
	uint32_t stored_len;
	uint64_t pack_offset;
};

struct build {
	const struct img_build_opts *o;
	struct img_repo *r;
	int fd;
	bool is_file;
	uint64_t size, n_chunks;
	uint32_t cs;

	/* One lock, one condition per kind of waiter (workers: their batch's
	 * slots freed; writer: a slot done), each signalled only by the stage
	 * that feeds it and once per batch, not per chunk: a broadcast per
	 * chunk woke every thread and cost more system time than the
	 * compression. */
	pthread_mutex_t mu;
	pthread_cond_t cv_free, cv_done;
	struct slot *slots;
	size_t n_slots;
	uint64_t next_work; /* first chunk no worker has claimed */
	uint64_t next_free; /* chunks before this one are written, slots free */
	int read_err;
	bool abort;
	EVP_MD_CTX *source_md;                   /* over the chunk hashes, in disk order */
	uint8_t zero_sha[32], zero_tail_sha[32]; /* a zero chunk; a short last one */
	uint8_t source_sha[32];

	struct bpack *packs;
	size_t n_packs, cap_packs;
	struct hentry *ht;
	size_t ht_cap, ht_n;

	struct img_chunk *chunks; /* chunk.pack = bpacks index until the end */
	size_t n_chunks_out, cap_chunks;

	int pack_fd; /* current pack in .tmp/, or -1 */
	char pack_rel[128];
	uint32_t pack_idx;
	uint64_t pack_len;
	uint64_t pack_flushed; /* bytes of the pack whose writeback was started */
	EVP_MD_CTX *pack_md;

	struct img_build_stats st;
};

/* ---- hash table of known chunks (open addressing, linear probing) ---- */

static size_t ht_slot(const struct build *b, const uint8_t sha[32])
{
	uint64_t h;

	memcpy(&h, sha, sizeof(h));
	return (size_t)h & (b->ht_cap - 1);
}

static struct hentry *ht_find(struct build *b, const uint8_t sha[32])
{
	for (size_t i = ht_slot(b, sha);; i = (i + 1) & (b->ht_cap - 1)) {
		if (b->ht[i].pack == UINT32_MAX)
			return NULL;
		if (memcmp(b->ht[i].sha, sha, 32) == 0)
			return &b->ht[i];
	}
}

static int ht_insert(struct build *b, const struct hentry *e);

static int ht_grow(struct build *b)
{
	struct hentry *old = b->ht;
	size_t old_cap = b->ht_cap, nc = old_cap ? old_cap * 2 : 4096;

	b->ht = malloc(nc * sizeof(*b->ht));
	if (!b->ht) {
		b->ht = old;
		return -ENOMEM;
	}
	for (size_t i = 0; i < nc; i++)
		b->ht[i].pack = UINT32_MAX;
	b->ht_cap = nc;
	b->ht_n = 0;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].pack != UINT32_MAX)
			ht_insert(b, &old[i]);
	free(old);
	return 0;
}

static int ht_insert(struct build *b, const struct hentry *e)
{
	size_t i;

	if ((b->ht_n + 1) * 2 > b->ht_cap) {
		int r = ht_grow(b);
		if (r < 0)
			return r;
	}
	for (i = ht_slot(b, e->sha); b->ht[i].pack != UINT32_MAX; i = (i + 1) & (b->ht_cap - 1))
		if (memcmp(b->ht[i].sha, e->sha, 32) == 0)
			return 0;
	b->ht[i] = *e;
	b->ht_n++;
	return 0;
}

static int add_bpack(struct build *b, const char *id, uint64_t size, uint32_t *ret)
{
	if (b->n_packs == b->cap_packs) {
		size_t nc = b->cap_packs ? b->cap_packs * 2 : 64;
		void *p = realloc(b->packs, nc * sizeof(*b->packs));
		if (!p)
			return -ENOMEM;
		b->packs = p;
		b->cap_packs = nc;
	}
	snprintf(b->packs[b->n_packs].id, 65, "%s", id);
	b->packs[b->n_packs].size = size;
	b->packs[b->n_packs].mindex = -1;
	*ret = (uint32_t)b->n_packs++;
	return 0;
}

/* Every chunk of every published manifest whose pack is present becomes a
 * dedup candidate (the repository is the publisher's own: signatures are
 * checked by verify, not here). */
static int index_image(struct img_repo *r, const char *name, const char *version, void *arg)
{
	struct build *b = arg;
	struct img_manifest *m;
	char err[256];
	uint32_t *map;
	int e = 0;

	if (img_repo_load_manifest(r, name, version, NULL, 0, &m, NULL, NULL, err, sizeof(err)) < 0)
		return 0; /* skip what does not parse: verify reports it */
	map = calloc(m->n_packs ? m->n_packs : 1, sizeof(*map));
	if (!map) {
		img_manifest_free(m);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->n_packs && e == 0; i++) {
		struct stat st;
		char rel[96];
		size_t j;

		map[i] = UINT32_MAX;
		snprintf(rel, sizeof(rel), "packs/%s.pack", m->packs[i].id);
		if (fstatat(r->dirfd, rel, &st, 0) < 0 || (uint64_t)st.st_size != m->packs[i].size)
			continue;
		for (j = 0; j < b->n_packs; j++)
			if (strcmp(b->packs[j].id, m->packs[i].id) == 0)
				break;
		if (j < b->n_packs)
			map[i] = (uint32_t)j;
		else
			e = add_bpack(b, m->packs[i].id, m->packs[i].size, &map[i]);
	}
	/* Only chunks of this chunk size can be reused: the hash covers length. */
	for (size_t i = 0; i < m->n_chunks && e == 0; i++) {
		const struct img_chunk *c = &m->chunks[i];
		struct hentry h;

		if (map[c->pack] == UINT32_MAX)
			continue;
		memcpy(h.sha, c->sha256, 32);
		h.pack = map[c->pack];
		h.pack_offset = c->pack_offset;
		h.stored_len = c->stored_len;
		e = ht_insert(b, &h);
	}
	free(map);
	img_manifest_free(m);
	return e;
}

/* ---- workers ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static void wake_all(struct build *b)
{
	pthread_cond_broadcast(&b->cv_free);
	pthread_cond_broadcast(&b->cv_done);
}

/* Reads chunk seq into slot s; a hole of a sparse file is not read (it is
 * a zero chunk). next_data is this worker's cache of the next data offset:
 * its claims only move forward. */
static int read_one(struct build *b, uint64_t seq, struct slot *s, uint64_t *next_data)
{
	uint64_t off = seq * b->cs;
	uint32_t len = (uint32_t)RB_MIN((uint64_t)b->cs, b->size - off);
	size_t got = 0;

	s->len = len;
	s->zero = false;
	if (b->is_file && *next_data < off + len) {
		off_t d = lseek(b->fd, (off_t)off, SEEK_DATA);
		if (d < 0)
			*next_data = errno == ENXIO ? b->size : off; /* ENXIO: hole to EOF */
		else
			*next_data = (uint64_t)d;
	}
	if (b->is_file && *next_data >= off + len) {
		s->zero = true;
		return 0;
	}
	while (got < len) {
		ssize_t k = pread(b->fd, s->in + got, len - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO; /* EOF early: device shrank */
		got += (size_t)k;
	}
	return 0;
}

/* A worker claims the next WORK_BATCH chunks in disk order, waits until
 * the writer has freed their ring slots' previous chunks, then reads,
 * zero-checks, hashes and compresses them without the lock. There is no
 * separate reader thread: it was a serial stage (it also hashed the whole
 * disk) that held the build to 0.6x of zstd on two cores. */
static void *worker_main(void *arg)
{
	struct build *b = arg;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(b->cs);
	uint64_t next_data = 0;

	for (;;) {
		uint64_t seq, n;
		int err = 0;

		pthread_mutex_lock(&b->mu);
		if (b->abort || b->next_work >= b->n_chunks) {
			pthread_mutex_unlock(&b->mu);
			break;
		}
		seq = b->next_work;
		n = RB_MIN(b->n_chunks - seq, (uint64_t)WORK_BATCH);
		b->next_work += n;
		/* The batch's slots last held chunks seq - n_slots ...: wait until
		 * the writer is past them. ("Slot free" is not enough: a worker
		 * claiming one ring-turn later could take a slot freed for this
		 * batch before this worker woke up; that corrupted images.) */
		while (b->next_free + b->n_slots < seq + n && !b->abort)
			pthread_cond_wait(&b->cv_free, &b->mu);
		pthread_mutex_unlock(&b->mu);
		if (b->abort)
			break;

		for (uint64_t i = 0; i < n && err == 0; i++) {
			struct slot *s = &b->slots[(seq + i) % b->n_slots];

			err = read_one(b, seq + i, s, &next_data);
			if (err < 0)
				break;
			if (!s->zero)
				s->zero = all_zero(s->in, s->len);
			if (s->zero)
				continue;
			rb_sha256(s->in, s->len, s->sha);
			s->out_len = cctx ? ZSTD_compressCCtx(cctx, s->out, cap, s->in, s->len,
			                                      b->o->level)
			                  : 0;
			if (!cctx || ZSTD_isError(s->out_len))
				err = -ENOMEM;
		}
		pthread_mutex_lock(&b->mu);
		if (err < 0) {
			if (!b->read_err)
				b->read_err = err;
			b->abort = true;
			wake_all(b);
		} else {
			for (uint64_t i = 0; i < n; i++)
				b->slots[(seq + i) % b->n_slots].state = SLOT_DONE;
			pthread_cond_signal(&b->cv_done);
		}
		pthread_mutex_unlock(&b->mu);
		if (err < 0)
			break;
	}
	ZSTD_freeCCtx(cctx);
	return NULL;
}

/* ---- writer: packs ---- */

static int pack_open(struct build *b)
{
	int e;

	b->pack_fd = img_repo_tmpfile(b->r, "pack", b->pack_rel);
	if (b->pack_fd < 0)
		return b->pack_fd;
	b->pack_len = 0;
	b->pack_flushed = 0;
	e = add_bpack(b, "", 0, &b->pack_idx);
	if (e == 0 && EVP_DigestInit_ex(b->pack_md, EVP_sha256(), NULL) != 1)
		e = -ENOMEM;
	return e;
}

/* fsync, name by content, rename into packs/. The file stays flock()ed
 * until closed, so gc skips it in .tmp/; in packs/ the age rule covers it
 * until the manifest is published. */
static int pack_close(struct build *b)
{
	uint8_t h[32];
	char rel[96];
	struct bpack *p = &b->packs[b->pack_idx];
	int e = 0;

	if (b->pack_fd < 0)
		return 0;
	EVP_DigestFinal_ex(b->pack_md, h, NULL);
	rb_hex(h, 32, p->id);
	p->size = b->pack_len;
	snprintf(rel, sizeof(rel), "packs/%s.pack", p->id);
	if (fsync(b->pack_fd) < 0)
		e = -errno;
	if (e == 0 && renameat(b->r->dirfd, b->pack_rel, b->r->dirfd, rel) < 0)
		e = -errno;
	close(b->pack_fd);
	b->pack_fd = -1;
	if (e < 0)
		unlinkat(b->r->dirfd, b->pack_rel, 0);
	else
		b->st.packs_new++;
	return e;
}

static int add_chunk(struct build *b, const struct img_chunk *c)
{
	if (b->n_chunks_out == b->cap_chunks) {
		size_t nc = b->cap_chunks ? b->cap_chunks * 2 : 1024;
		void *p = realloc(b->chunks, nc * sizeof(*b->chunks));
		if (!p)
			return -ENOMEM;
		b->chunks = p;
		b->cap_chunks = nc;
	}
	b->chunks[b->n_chunks_out++] = *c;
	return 0;
}

static int write_slot(struct build *b, uint64_t seq, struct slot *s)
{
	struct img_chunk c;
	struct hentry *h;
	int e;

	b->st.chunks++;
	EVP_DigestUpdate(b->source_md,
	                 !s->zero          ? s->sha
	                 : s->len == b->cs ? b->zero_sha
	                                   : b->zero_tail_sha,
	                 32);
	if (s->zero) {
		b->st.chunks_zero++;
		return 0;
	}
	memset(&c, 0, sizeof(c));
	c.offset = seq * b->cs;
	c.length = s->len;
	memcpy(c.sha256, s->sha, 32);
	b->st.data_bytes += s->len;
	h = ht_find(b, s->sha);
	if (h) {
		b->st.chunks_dedup++;
		c.pack = h->pack;
		c.pack_offset = h->pack_offset;
		c.stored_len = h->stored_len;
		return add_chunk(b, &c);
	}
	if (b->pack_fd < 0 && (e = pack_open(b)) < 0)
		return e;
	e = rb_write_all(b->pack_fd, s->out, s->out_len);
	if (e < 0)
		return e;
	EVP_DigestUpdate(b->pack_md, s->out, s->out_len);
	c.pack = b->pack_idx;
	c.pack_offset = b->pack_len;
	c.stored_len = (uint32_t)s->out_len;
	b->pack_len += s->out_len;
	b->st.stored_new += s->out_len;
	/* Start the pack's writeback every few MiB, so that the fsync when it
	 * is closed finds little left: an fsync of a whole 16 MiB pack stalled
	 * this (the writer) thread, the ring filled and the workers idled. */
	if (b->pack_len - b->pack_flushed >= PACK_FLUSH_BYTES) {
		sync_file_range(b->pack_fd, (off_t)b->pack_flushed,
		                (off_t)(b->pack_len - b->pack_flushed), SYNC_FILE_RANGE_WRITE);
		b->pack_flushed = b->pack_len;
	}
	{
		struct hentry n;
		memcpy(n.sha, c.sha256, 32);
		n.pack = c.pack;
		n.pack_offset = c.pack_offset;
		n.stored_len = c.stored_len;
		e = ht_insert(b, &n);
	}
	if (e == 0)
		e = add_chunk(b, &c);
	if (e == 0 && b->pack_len >= b->o->pack_size)
		e = pack_close(b);
	return e;
}

/* ---- progress ---- */

void img_progress_init(struct img_progress *p, const char *what, int mode, uint64_t total)
{
	p->what = what;
	p->mode = mode;
	p->total = total;
	p->start_us = p->last_us = rb_now_usec();
}

void img_progress_update(struct img_progress *p, uint64_t done, bool final)
{
	uint64_t now = rb_now_usec();
	double secs, rate, eta;

	if (p->mode == 0)
		return;
	if (!final && now - p->last_us < (p->mode == 2 ? 250000ULL : 5000000ULL))
		return;
	p->last_us = now;
	secs = (double)(now - p->start_us) / 1e6;
	rate = secs > 0 ? (double)done / secs : 0;
	eta = rate > 0 ? (double)(p->total - done) / rate : 0;
	fprintf(stderr, "%s%s: %.1f / %.1f MiB (%3.0f%%)  %.1f MB/s  ETA %um%02us%s",
	        p->mode == 2 ? "\r" : "", p->what, (double)done / 1048576.0,
	        (double)p->total / 1048576.0,
	        p->total ? 100.0 * (double)done / (double)p->total : 100.0, rate / 1e6,
	        (unsigned)eta / 60, (unsigned)eta % 60, p->mode == 2 && !final ? "   " : "\n");
}

/* ---- the build ---- */

static int make_manifest(struct build *b, struct img_manifest **ret, char *err, size_t errlen)
{
	struct img_manifest *m;
	uint8_t head[65536];
	ssize_t hn;
	int e;

	e = img_manifest_new(&m);
	if (e < 0)
		return e;
	snprintf(m->name, sizeof(m->name), "%s", b->o->name);
	snprintf(m->version, sizeof(m->version), "%s", b->o->version);
	m->disk_size = b->size;
	m->chunk_size = b->cs;
	m->created = time(NULL);
	rb_hex(b->source_sha, 32, m->source_sha256);
	hn = pread(b->fd, head, sizeof(head), 0);
	if (hn > 0)
		e = img_part_scan(head, (size_t)hn, b->size, m);
	for (size_t i = 0; i < b->n_chunks_out && e == 0; i++) {
		struct img_chunk c = b->chunks[i];
		struct bpack *p = &b->packs[c.pack];

		if (p->mindex < 0) {
			uint32_t idx;
			e = img_manifest_add_pack(m, p->id, p->size, &idx);
			p->mindex = idx;
		}
		c.pack = (uint32_t)p->mindex;
		if (e == 0)
			e = img_manifest_add_chunk(m, &c);
	}
	if (e == 0)
		e = img_manifest_validate(m, err, errlen);
	if (e < 0) {
		img_manifest_free(m);
		return e;
	}
	*ret = m;
	return 0;
}

int img_build(struct img_repo *r, const struct rb_key *key, const struct img_build_opts *o, int fd,
              uint64_t size, bool is_file, struct img_build_stats *ret, char *err, size_t errlen)
{
	struct build b;
	pthread_t *workers = NULL;
	unsigned nw = o->threads ? o->threads : (unsigned)RB_MAX(1L, sysconf(_SC_NPROCESSORS_ONLN));
	size_t started = 0, cap;
	struct img_manifest *m = NULL;
	struct img_progress prog;
	uint64_t t0 = rb_now_usec();
	int e = 0;

	memset(&b, 0, sizeof(b));
	b.o = o;
	b.r = r;
	b.fd = fd;
	b.is_file = is_file;
	b.size = size;
	b.cs = o->chunk_size;
	b.pack_fd = -1;
	b.n_chunks = (size + b.cs - 1) / b.cs;
	b.st.disk_size = size;
	snprintf(err, errlen, "out of memory");
	if (size == 0 || size % 512 != 0 || size > IMG_DISK_SIZE_MAX) {
		snprintf(err, errlen,
		         "image size %llu is not a positive multiple of 512 bytes "
		         "(up to 2^50): pad it with truncate -s to a sector multiple",
		         (unsigned long long)size);
		return -EINVAL;
	}
	if (img_repo_has_image(r, o->name, o->version)) {
		snprintf(err, errlen,
		         "image %s %s already exists: remove it (rm) or pick a new "
		         "version",
		         o->name, o->version);
		return -EEXIST;
	}
	pthread_mutex_init(&b.mu, NULL);
	pthread_cond_init(&b.cv_free, NULL);
	pthread_cond_init(&b.cv_done, NULL);
	b.pack_md = EVP_MD_CTX_new();
	b.source_md = EVP_MD_CTX_new();
	if (!b.pack_md || !b.source_md || EVP_DigestInit_ex(b.source_md, EVP_sha256(), NULL) != 1 ||
	    (e = ht_grow(&b)) < 0) {
		e = -ENOMEM;
		goto out;
	}
	e = img_repo_for_each_image(r, index_image, &b);
	if (e < 0) {
		snprintf(err, errlen, "indexing the repository's chunks: %s", strerror(-e));
		goto out;
	}
	b.n_slots = RING_BATCHES * WORK_BATCH * (nw + 1);
	b.slots = calloc(b.n_slots, sizeof(*b.slots));
	workers = calloc(nw, sizeof(*workers));
	if (!b.slots || !workers) {
		e = -ENOMEM;
		goto out;
	}
	cap = ZSTD_compressBound(b.cs);
	for (size_t i = 0; i < b.n_slots; i++) {
		b.slots[i].in = malloc(b.cs);
		b.slots[i].out = malloc(cap);
		if (!b.slots[i].in || !b.slots[i].out) {
			e = -ENOMEM;
			goto out;
		}
	}
	/* The hashes a zero chunk would have: full size and a short tail. */
	memset(b.slots[0].in, 0, b.cs);
	rb_sha256(b.slots[0].in, b.cs, b.zero_sha);
	rb_sha256(b.slots[0].in, (size_t)(size - (b.n_chunks - 1) * b.cs), b.zero_tail_sha);
	for (; started < nw; started++)
		if (pthread_create(&workers[started], NULL, worker_main, &b) != 0)
			break;
	if (started == 0) {
		e = -EAGAIN;
		goto out_join;
	}
	img_progress_init(&prog, "build", o->progress, size);
	for (uint64_t seq = 0, k = 0; seq < b.n_chunks; seq += k) {
		uint64_t written = 0;

		/* Take every finished chunk in order from seq in one lock round
		 * trip, write them, free their slots in one more. */
		pthread_mutex_lock(&b.mu);
		while (b.slots[seq % b.n_slots].state != SLOT_DONE && !b.abort)
			pthread_cond_wait(&b.cv_done, &b.mu);
		if (b.abort) {
			e = b.read_err ? b.read_err : -EIO;
			pthread_mutex_unlock(&b.mu);
			snprintf(err, errlen, "reading or compressing the image: %s", strerror(-e));
			goto out_join;
		}
		k = 1;
		while (seq + k < b.n_chunks && k < b.n_slots &&
		       b.slots[(seq + k) % b.n_slots].state == SLOT_DONE)
			k++;
		pthread_mutex_unlock(&b.mu);
		for (; written < k; written++) {
			e = write_slot(&b, seq + written, &b.slots[(seq + written) % b.n_slots]);
			if (e < 0)
				break;
		}
		pthread_mutex_lock(&b.mu);
		for (uint64_t i = 0; i < written; i++)
			b.slots[(seq + i) % b.n_slots].state = SLOT_FREE;
		b.next_free = seq + written;
		if (e < 0) {
			b.abort = true;
			wake_all(&b);
		} else {
			/* Workers wait on different slots of the ring: all of them. */
			pthread_cond_broadcast(&b.cv_free);
		}
		pthread_mutex_unlock(&b.mu);
		if (e < 0) {
			snprintf(err, errlen, "writing a pack into %s/.tmp: %s", r->path,
			         strerror(-e));
			goto out_join;
		}
		img_progress_update(&prog, RB_MIN((seq + k) * b.cs, size), false);
	}
	img_progress_update(&prog, size, true);
out_join:
	pthread_mutex_lock(&b.mu);
	if (e < 0)
		b.abort = true;
	wake_all(&b);
	pthread_mutex_unlock(&b.mu);
	for (size_t i = 0; i < started; i++)
		pthread_join(workers[i], NULL);
	if (e == 0 && b.read_err < 0) {
		e = b.read_err;
		snprintf(err, errlen, "reading the image: %s", strerror(-e));
	}
	if (e == 0) {
		e = pack_close(&b);
		if (e < 0)
			snprintf(err, errlen, "publishing a pack: %s", strerror(-e));
	}
	if (e == 0 && EVP_DigestFinal_ex(b.source_md, b.source_sha, NULL) != 1)
		e = -ENOMEM;
	if (e == 0)
		e = make_manifest(&b, &m, err, errlen);
	if (e == 0)
		e = img_repo_publish(r, key, m, err, errlen);
	if (e == 0 && ret) {
		b.st.stored_total = img_manifest_stored_bytes(m);
		b.st.seconds = (double)(rb_now_usec() - t0) / 1e6;
		*ret = b.st;
	}
out:
	if (b.pack_fd >= 0) {
		unlinkat(r->dirfd, b.pack_rel, 0);
		close(b.pack_fd);
	}
	if (b.slots)
		for (size_t i = 0; i < b.n_slots; i++) {
			free(b.slots[i].in);
			free(b.slots[i].out);
		}
	free(b.slots);
	free(workers);
	free(b.ht);
	free(b.packs);
	free(b.chunks);
	EVP_MD_CTX_free(b.pack_md);
	EVP_MD_CTX_free(b.source_md);
	img_manifest_free(m);
	pthread_mutex_destroy(&b.mu);
	pthread_cond_destroy(&b.cv_free);
	pthread_cond_destroy(&b.cv_done);
	return e;
}
