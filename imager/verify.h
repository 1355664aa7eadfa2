/* Checking an image in a repository: signature, packs, every chunk. Also
 * the chunk reader that extract (and later the agent) uses. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "repo.h"

/* Reads chunks of one manifest from their packs, decompresses and checks
 * them against length and SHA-256. Keeps one fd per pack open. */
struct img_chunk_reader;
int img_chunk_reader_new(struct img_repo *r, const struct img_manifest *m,
                         struct img_chunk_reader **ret);
void img_chunk_reader_free(struct img_chunk_reader *cr);
/* Writes chunk i's bytes (m->chunks[i].length) into out (chunk_size bytes).
 * -ENOENT pack missing, -EIO short read, -EBADMSG corrupt (message in err
 * names the chunk index, offset, hash and pack). */
int img_chunk_read(struct img_chunk_reader *cr, size_t i, uint8_t *out, char *err, size_t errlen);

struct img_verify_stats {
	uint64_t chunks_checked, bytes_checked, failures;
};

/* Verifies one image: signature against pubs, manifest rules, each pack's
 * presence and size, each distinct chunk's content. Every failure is
 * reported through report(); returns 0, or -EBADMSG/-errno. */
typedef void (*img_verify_report_fn)(const char *msg, void *arg);
int img_verify_image(struct img_repo *r, const struct rb_key *const *pubs, size_t n_pubs,
                     const char *name, const char *version, img_verify_report_fn report, void *arg,
                     struct img_verify_stats *ret);

/* Verifies catalog.json against its signature and the manifests it lists
 * (their SHA-256). 0 also when there is no catalogue (-ENOENT is reported
 * only if the repository has images). */
int img_verify_catalog(struct img_repo *r, const struct rb_key *const *pubs, size_t n_pubs,
                       img_verify_report_fn report, void *arg);
