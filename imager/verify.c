/* verify: a repository image is exactly what its signer built.
 *
 * Order: the signature over the exact manifest bytes first (nothing in an
 * unsigned manifest is trusted, not even its pack names), then the
 * manifest rules (img_manifest_parse), then each pack's presence and size,
 * then every distinct chunk: its stored bytes must be one zstd frame that
 * decompresses to exactly the chunk length and hashes to the chunk's
 * SHA-256. All failures are reported, not only the first, each naming the
 * chunk so an operator can find the damaged pack.
 *
 * The chunk reader here is the one extract uses, and the agent's stage 1
 * will use the same checks on bytes from HTTP. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "common/sha256.h"
#include "verify.h"

struct img_chunk_reader {
	struct img_repo *r;
	const struct img_manifest *m;
	int *fds; /* per pack; -2 = not opened yet */
	ZSTD_DCtx *dctx;
	uint8_t *zbuf;
	size_t zcap;
};

int img_chunk_reader_new(struct img_repo *r, const struct img_manifest *m,
                         struct img_chunk_reader **ret)
{
	struct img_chunk_reader *cr = calloc(1, sizeof(*cr));

	if (!cr)
		return -ENOMEM;
	cr->r = r;
	cr->m = m;
	cr->zcap = ZSTD_compressBound(m->chunk_size);
	cr->fds = malloc((m->n_packs ? m->n_packs : 1) * sizeof(int));
	cr->dctx = ZSTD_createDCtx();
	cr->zbuf = malloc(cr->zcap);
	if (!cr->fds || !cr->dctx || !cr->zbuf) {
		cr->m = NULL;
		img_chunk_reader_free(cr);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->n_packs; i++)
		cr->fds[i] = -2;
	*ret = cr;
	return 0;
}

void img_chunk_reader_free(struct img_chunk_reader *cr)
{
	if (!cr)
		return;
	for (size_t i = 0; cr->m && i < cr->m->n_packs; i++)
		if (cr->fds[i] >= 0)
			close(cr->fds[i]);
	free(cr->fds);
	ZSTD_freeDCtx(cr->dctx);
	free(cr->zbuf);
	free(cr);
}

int img_chunk_read(struct img_chunk_reader *cr, size_t i, uint8_t *out, char *err, size_t errlen)
{
	const struct img_chunk *c = &cr->m->chunks[i];
	const char *pid = cr->m->packs[c->pack].id;
	char hex[65];
	uint8_t h[32];
	size_t got = 0, n;

	rb_hex(c->sha256, 32, hex);
	if (cr->fds[c->pack] == -2)
		cr->fds[c->pack] = img_repo_open_pack(cr->r, pid);
	if (cr->fds[c->pack] < 0) {
		snprintf(err, errlen, "chunk %zu (offset %llu, sha256 %s): pack %s: %s", i,
		         (unsigned long long)c->offset, hex, pid, strerror(-cr->fds[c->pack]));
		return cr->fds[c->pack] == -EINVAL ? -EBADMSG : cr->fds[c->pack];
	}
	while (got < c->stored_len) {
		ssize_t k = pread(cr->fds[c->pack], cr->zbuf + got, c->stored_len - got,
		                  (off_t)(c->pack_offset + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(err, errlen, "chunk %zu (offset %llu, sha256 %s): pack %s: %s", i,
			         (unsigned long long)c->offset, hex, pid,
			         k < 0 ? strerror(errno) : "truncated");
			return -EIO;
		}
		got += (size_t)k;
	}
	n = ZSTD_decompressDCtx(cr->dctx, out, cr->m->chunk_size, cr->zbuf, c->stored_len);
	if (ZSTD_isError(n) || n != c->length) {
		snprintf(err, errlen,
		         "chunk %zu (offset %llu, sha256 %s) in pack %s at %llu: stored bytes %s",
		         i, (unsigned long long)c->offset, hex, pid,
		         (unsigned long long)c->pack_offset,
		         ZSTD_isError(n) ? ZSTD_getErrorName(n) : "decompress to the wrong length");
		return -EBADMSG;
	}
	rb_sha256(out, n, h);
	if (memcmp(h, c->sha256, 32) != 0) {
		snprintf(err, errlen,
		         "chunk %zu (offset %llu, sha256 %s) in pack %s at %llu: content hash "
		         "mismatch (the pack is damaged)",
		         i, (unsigned long long)c->offset, hex, pid,
		         (unsigned long long)c->pack_offset);
		return -EBADMSG;
	}
	return 0;
}

static int cmp_u64pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	if (x[0] != y[0])
		return x[0] < y[0] ? -1 : 1;
	return x[1] < y[1] ? -1 : x[1] > y[1];
}

int img_verify_image(struct img_repo *r, const struct rb_key *const *pubs, size_t n_pubs,
                     const char *name, const char *version, img_verify_report_fn report, void *arg,
                     struct img_verify_stats *ret)
{
	struct img_verify_stats s = { 0 };
	struct img_manifest *m = NULL;
	struct img_chunk_reader *cr = NULL;
	uint64_t(*seen)[2] = NULL;
	uint8_t *buf = NULL;
	char msg[512];
	size_t n_seen = 0;
	int e;

	if (n_pubs == 0) {
		report("no trusted public key given (--pub)", arg);
		return -EINVAL;
	}
	e = img_repo_load_manifest(r, name, version, pubs, n_pubs, &m, NULL, NULL, msg,
	                           sizeof(msg));
	if (e < 0) {
		report(msg, arg);
		return e;
	}
	{
		/* The chunk list must add up to the source hash it was built with
		 * (a capture's "this is that disk"); cheap: 32 bytes per piece. */
		uint8_t sh[32];
		char hex[65];
		int he = img_manifest_source_hash(m, sh);

		if (he == 0) {
			rb_hex(sh, 32, hex);
			if (strcmp(hex, m->source_sha256) != 0) {
				snprintf(msg, sizeof(msg),
				         "%s %s: the chunk list hashes to %s, not to "
				         "source_sha256 %s",
				         name, version, hex, m->source_sha256);
				report(msg, arg);
				s.failures++;
			}
		} else if (he != -E2BIG) {
			e = he;
			report("out of memory", arg);
			goto out;
		}
	}
	for (size_t i = 0; i < m->n_packs; i++) {
		char rel[96];
		struct stat st;

		snprintf(rel, sizeof(rel), "packs/%s.pack", m->packs[i].id);
		if (fstatat(r->dirfd, rel, &st, 0) < 0) {
			snprintf(msg, sizeof(msg), "%s %s: %s is missing", name, version, rel);
			report(msg, arg);
			s.failures++;
		} else if ((uint64_t)st.st_size != m->packs[i].size) {
			snprintf(msg, sizeof(msg),
			         "%s %s: %s has %llu bytes, the manifest says %llu", name, version,
			         rel, (unsigned long long)st.st_size,
			         (unsigned long long)m->packs[i].size);
			report(msg, arg);
			s.failures++;
		}
	}
	e = img_chunk_reader_new(r, m, &cr);
	buf = malloc(m->chunk_size);
	seen = malloc((m->n_chunks ? m->n_chunks : 1) * sizeof(*seen));
	if (e < 0 || !buf || !seen) {
		e = -ENOMEM;
		report("out of memory", arg);
		goto out;
	}
	/* Each distinct stored frame once: dedup makes many chunks share one. */
	for (size_t i = 0; i < m->n_chunks; i++) {
		seen[i][0] = m->chunks[i].pack;
		seen[i][1] = m->chunks[i].pack_offset;
	}
	n_seen = m->n_chunks;
	qsort(seen, n_seen, sizeof(*seen), cmp_u64pair);
	{
		/* checked[] holds 1 + the chunk that verified a frame, indexed like
		 * seen[]; another chunk skips only if it claims the same content. */
		size_t *checked = calloc(n_seen ? n_seen : 1, sizeof(*checked));
		if (!checked) {
			e = -ENOMEM;
			report("out of memory", arg);
			goto out;
		}
		for (size_t i = 0; i < m->n_chunks; i++) {
			uint64_t key[2] = { m->chunks[i].pack, m->chunks[i].pack_offset };
			uint64_t(*hit)[2] = bsearch(key, seen, n_seen, sizeof(*seen), cmp_u64pair);
			size_t at = hit ? (size_t)(hit - seen) : 0;

			/* bsearch may land on any of equal keys: use the first. */
			while (hit && at > 0 && cmp_u64pair(seen[at - 1], key) == 0)
				at--;
			if (hit && checked[at]) {
				const struct img_chunk *p = &m->chunks[checked[at] - 1];
				if (memcmp(p->sha256, m->chunks[i].sha256, 32) == 0 &&
				    p->length == m->chunks[i].length &&
				    p->stored_len == m->chunks[i].stored_len)
					continue;
			} else if (hit) {
				checked[at] = i + 1;
			}
			e = img_chunk_read(cr, i, buf, msg, sizeof(msg));
			s.chunks_checked++;
			if (e < 0) {
				char full[700];
				snprintf(full, sizeof(full), "%s %s: %s", name, version, msg);
				report(full, arg);
				s.failures++;
			} else {
				s.bytes_checked += m->chunks[i].length;
			}
		}
		free(checked);
	}
	e = s.failures ? -EBADMSG : 0;
out:
	if (ret)
		*ret = s;
	img_chunk_reader_free(cr);
	img_manifest_free(m);
	free(buf);
	free(seen);
	return e;
}

int img_verify_catalog(struct img_repo *r, const struct rb_key *const *pubs, size_t n_pubs,
                       img_verify_report_fn report, void *arg)
{
	struct img_catalog *c = NULL;
	char *raw = NULL, *sig = NULL;
	size_t raw_len, sig_len;
	char msg[512];
	int e, bad = 0;

	e = img_repo_read(r, "catalog.json", IMG_CATALOG_MAX_SIZE, &raw, &raw_len);
	if (e == -ENOENT)
		return 0;
	if (e == 0)
		e = img_repo_read(r, "catalog.json.sig", 4096, &sig, &sig_len);
	if (e < 0) {
		snprintf(msg, sizeof(msg), "catalogue: %s", strerror(-e));
		report(msg, arg);
		goto out;
	}
	e = rb_verify(pubs, n_pubs, raw, raw_len, sig, sig_len);
	if (e < 0) {
		report("catalog.json: signature does not verify with the given public key(s)", arg);
		e = -EBADMSG;
		goto out;
	}
	e = img_catalog_parse(raw, raw_len, &c, msg, sizeof(msg));
	if (e < 0) {
		char full[600];
		snprintf(full, sizeof(full), "catalog.json: %s", msg);
		report(full, arg);
		goto out;
	}
	for (size_t i = 0; i < c->n_images; i++) {
		char *mraw = NULL, hex[65];
		size_t mlen;
		uint8_t h[32];

		if (img_repo_read(r, c->images[i].manifest, IMG_MANIFEST_MAX_SIZE, &mraw, &mlen) <
		    0) {
			snprintf(msg, sizeof(msg), "catalog.json: %s (%s %s) is missing",
			         c->images[i].manifest, c->images[i].name, c->images[i].version);
			report(msg, arg);
			bad++;
			continue;
		}
		rb_sha256(mraw, mlen, h);
		rb_hex(h, 32, hex);
		free(mraw);
		if (strcmp(hex, c->images[i].manifest_sha256) != 0) {
			snprintf(msg, sizeof(msg),
			         "catalog.json: %s does not match its manifest_sha256",
			         c->images[i].manifest);
			report(msg, arg);
			bad++;
		}
	}
	e = bad ? -EBADMSG : 0;
out:
	img_catalog_free(c);
	free(raw);
	free(sig);
	return e;
}
