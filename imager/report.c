/* ls and diff: read-only views of a repository.
 *
 * diff answers the question the chunk size was chosen for: a node with
 * version 1 on its disk hashes its chunks and fetches only the chunks of
 * version 2 whose hash at the same offset differs; runs of those frames
 * that lie back to back in one pack are one HTTP Range request. Output is
 * "key value" lines so scripts (bench/image-delta.sh) can read it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"

struct ls_img {
	struct img_manifest *m;
	size_t shared;
};

struct ls_all {
	struct ls_img *v;
	size_t n, cap;
	char *err;
	size_t errlen;
};

static int ls_collect(struct img_repo *r, const char *name, const char *version, void *arg)
{
	struct ls_all *a = arg;
	struct img_manifest *m;
	int e;

	e = img_repo_load_manifest(r, name, version, NULL, 0, &m, NULL, NULL, a->err, a->errlen);
	if (e < 0)
		return e;
	if (a->n == a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 16;
		void *p = realloc(a->v, nc * sizeof(*a->v));
		if (!p) {
			img_manifest_free(m);
			return -ENOMEM;
		}
		a->v = p;
		a->cap = nc;
	}
	a->v[a->n].m = m;
	a->v[a->n].shared = 0;
	a->n++;
	return 0;
}

struct sha_ref {
	uint8_t sha[32];
	uint32_t img;
};

static int cmp_ref(const void *x, const void *y)
{
	const struct sha_ref *a = x, *b = y;
	int c = memcmp(a->sha, b->sha, 32);

	return c ? c : (a->img > b->img) - (a->img < b->img);
}

static int cmp_img(const void *x, const void *y)
{
	const struct ls_img *a = x, *b = y;
	int c = strcmp(a->m->name, b->m->name);

	return c ? c : strcmp(a->m->version, b->m->version);
}

static uint64_t packs_bytes(struct img_repo *r)
{
	DIR *d;
	struct dirent *de;
	uint64_t sum = 0;
	int fd = openat(r->dirfd, "packs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] != '.' && fstatat(fd, de->d_name, &st, 0) == 0)
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

int img_report_ls(struct img_repo *r, FILE *out, char *err, size_t errlen)
{
	struct ls_all a = { .err = err, .errlen = errlen };
	struct sha_ref *refs = NULL;
	size_t n_refs = 0, total = 0;
	uint64_t logical = 0;
	int e;

	e = img_repo_for_each_image(r, ls_collect, &a);
	if (e < 0)
		goto out;
	qsort(a.v, a.n, sizeof(*a.v), cmp_img);
	for (size_t i = 0; i < a.n; i++)
		total += a.v[i].m->n_chunks;
	refs = malloc((total ? total : 1) * sizeof(*refs));
	if (!refs) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < a.n; i++)
		for (size_t j = 0; j < a.v[i].m->n_chunks; j++) {
			memcpy(refs[n_refs].sha, a.v[i].m->chunks[j].sha256, 32);
			refs[n_refs++].img = (uint32_t)i;
		}
	qsort(refs, n_refs, sizeof(*refs), cmp_ref);
	/* A run of equal hashes spanning several images: each of those images
	 * shares that (distinct) chunk. */
	for (size_t i = 0; i < n_refs;) {
		size_t j = i + 1;
		bool multi = false;

		while (j < n_refs && memcmp(refs[j].sha, refs[i].sha, 32) == 0) {
			if (refs[j].img != refs[i].img)
				multi = true;
			j++;
		}
		if (multi)
			for (size_t k = i; k < j; k++)
				if (k == i || refs[k].img != refs[k - 1].img)
					a.v[refs[k].img].shared++;
		i = j;
	}
	fprintf(out, "%-24s %-20s %14s %14s %14s %8s %8s\n", "NAME", "VERSION", "DISK", "DATA",
	        "STORED", "CHUNKS", "SHARED");
	for (size_t i = 0; i < a.n; i++) {
		const struct img_manifest *m = a.v[i].m;
		logical += img_manifest_data_bytes(m);
		fprintf(out, "%-24s %-20s %14llu %14llu %14llu %8zu %8zu\n", m->name, m->version,
		        (unsigned long long)m->disk_size,
		        (unsigned long long)img_manifest_data_bytes(m),
		        (unsigned long long)img_manifest_stored_bytes(m), m->n_chunks,
		        a.v[i].shared);
	}
	fprintf(out, "%zu image version(s); data %llu bytes; packs on disk %llu bytes\n", a.n,
	        (unsigned long long)logical, (unsigned long long)packs_bytes(r));
out:
	for (size_t i = 0; i < a.n; i++)
		img_manifest_free(a.v[i].m);
	free(a.v);
	free(refs);
	return e;
}

/* Frames fetched for the chunks with need[i] set, in disk order, each frame
 * once; a frame that starts where the previous one ended in the same pack
 * extends the current Range request. */
static void fetch_cost(const struct img_manifest *m, const uint8_t *need, uint64_t *ret_bytes,
                       uint64_t *ret_requests)
{
	uint64_t bytes = 0, reqs = 0, prev_pack = UINT64_MAX, prev_end = 0;

	/* Frames already fetched (dedup within the image): an open-addressing
	 * set keyed by (pack + 1, pack_offset); 0 marks an empty slot. */
	size_t cap = 1;
	while (cap < 2 * (m->n_chunks + 1))
		cap <<= 1;
	uint64_t(*set)[2] = calloc(cap, sizeof(*set));
	if (!set) {
		*ret_bytes = img_manifest_stored_bytes(m);
		*ret_requests = m->n_chunks;
		return;
	}
	for (size_t i = 0; i < m->n_chunks; i++) {
		const struct img_chunk *c = &m->chunks[i];
		uint64_t k0 = c->pack + 1, k1 = c->pack_offset;
		size_t h = (size_t)((k0 * 0x9e3779b97f4a7c15ULL) ^ (k1 * 0xc2b2ae3d27d4eb4fULL)) &
		           (cap - 1);
		bool dup = false;

		if (!need[i])
			continue;
		while (set[h][0]) {
			if (set[h][0] == k0 && set[h][1] == k1) {
				dup = true;
				break;
			}
			h = (h + 1) & (cap - 1);
		}
		if (dup)
			continue;
		set[h][0] = k0;
		set[h][1] = k1;
		bytes += c->stored_len;
		if (c->pack != prev_pack || c->pack_offset != prev_end)
			reqs++;
		prev_pack = c->pack;
		prev_end = c->pack_offset + c->stored_len;
	}
	free(set);
	*ret_bytes = bytes;
	*ret_requests = reqs;
}

int img_report_diff(struct img_repo *r, const char *name, const char *v1, const char *v2, FILE *out,
                    char *err, size_t errlen)
{
	struct img_manifest *a = NULL, *b = NULL;
	uint8_t *need = NULL, *all = NULL;
	uint64_t changed = 0, changed_bytes = 0, zeroed = 0;
	uint64_t fetch, reqs, full, full_reqs;
	size_t j = 0;
	int e;

	e = img_repo_load_manifest(r, name, v1, NULL, 0, &a, NULL, NULL, err, errlen);
	if (e == 0)
		e = img_repo_load_manifest(r, name, v2, NULL, 0, &b, NULL, NULL, err, errlen);
	if (e < 0)
		goto out;
	need = calloc(b->n_chunks + 1, 1);
	all = malloc(b->n_chunks + 1);
	if (!need || !all) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memset(all, 1, b->n_chunks + 1);
	/* Both lists are sorted by offset: merge. */
	for (size_t i = 0; i < b->n_chunks; i++) {
		const struct img_chunk *c = &b->chunks[i];

		while (j < a->n_chunks && a->chunks[j].offset < c->offset) {
			zeroed++; /* stored in v1, zeros in v2 */
			j++;
		}
		if (j < a->n_chunks && a->chunks[j].offset == c->offset) {
			if (a->chunks[j].length == c->length &&
			    memcmp(a->chunks[j].sha256, c->sha256, 32) == 0) {
				j++;
				continue;
			}
			j++;
		}
		need[i] = 1;
		changed++;
		changed_bytes += c->length;
	}
	zeroed += a->n_chunks - j;
	fetch_cost(b, need, &fetch, &reqs);
	fetch_cost(b, all, &full, &full_reqs);
	fprintf(out, "from %s %s to %s %s (chunk size %u):\n", name, v1, name, v2, b->chunk_size);
	fprintf(out, "chunks_total %zu\n", b->n_chunks);
	fprintf(out, "chunks_changed %llu\n", (unsigned long long)changed);
	fprintf(out, "bytes_changed %llu\n", (unsigned long long)changed_bytes);
	fprintf(out, "chunks_zeroed %llu\n", (unsigned long long)zeroed);
	fprintf(out, "fetch_bytes %llu\n", (unsigned long long)fetch);
	fprintf(out, "fetch_requests %llu\n", (unsigned long long)reqs);
	fprintf(out, "full_deploy_bytes %llu\n", (unsigned long long)full);
	fprintf(out, "full_deploy_requests %llu\n", (unsigned long long)full_reqs);
	fprintf(out, "fetch_percent %.2f\n", full ? 100.0 * (double)fetch / (double)full : 0.0);
	if (a->chunk_size != b->chunk_size)
		fprintf(out, "note: chunk sizes differ (%u vs %u): every chunk counts as changed\n",
		        a->chunk_size, b->chunk_size);
out:
	img_manifest_free(a);
	img_manifest_free(b);
	free(need);
	free(all);
	return e;
}
