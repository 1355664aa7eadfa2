/* Image manifest (format "rackboot-image/1"): the list of stored chunks of a
 * raw disk image and where their zstd-compressed bytes lie in pack files.
 * Parsing is strict and bounded (the manifest comes from a repository that a
 * signature protects, but the parser runs before and after that check and
 * must survive any input). Pure: no I/O. See docs/formats.md. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_MANIFEST_FORMAT   "rackboot-image/1"
#define IMG_MANIFEST_MAX_SIZE (256ULL * 1024 * 1024) /* bytes of JSON */
#define IMG_DISK_SIZE_MAX     (1ULL << 50)
#define IMG_CHUNK_SIZE_MIN    4096U
#define IMG_CHUNK_SIZE_MAX    (16U * 1024 * 1024)
#define IMG_NAME_MAX          64 /* name and version: [A-Za-z0-9._+-]{1,64} */
#define IMG_MAX_PARTS         128
#define IMG_MAX_PACKS         (1U << 20)

struct img_chunk {
	uint64_t offset;      /* in the disk; multiple of chunk_size */
	uint32_t length;      /* uncompressed; == chunk_size except the disk's last */
	uint8_t sha256[32];   /* of the uncompressed bytes */
	uint32_t pack;        /* index into packs[] */
	uint64_t pack_offset; /* where the zstd frame starts in the pack */
	uint32_t stored_len;  /* zstd frame length */
};

struct img_pack {
	char id[65]; /* sha256 hex of the pack file: packs/<id>.pack */
	uint64_t size;
};

struct img_partition {
	unsigned index;
	uint64_t start, size;
	char type[40]; /* GPT type GUID or "0x83" */
	char name[72];
};

struct img_manifest {
	char name[65], version[65];
	uint64_t disk_size;
	uint32_t chunk_size;
	int64_t created;
	char source_sha256[65];
	char table[8]; /* "gpt", "mbr" or "none" */
	struct img_partition *parts;
	size_t n_parts;
	struct img_pack *packs;
	size_t n_packs;
	struct img_chunk *chunks;
	size_t n_chunks;
};

/* Empty manifest: table "none", everything else zero. */
int img_manifest_new(struct img_manifest **ret);
void img_manifest_free(struct img_manifest *m);

/* Parses and validates. -EINVAL with a message naming the field (and chunk
 * index) in err; -ENOMEM; -EFBIG if len exceeds IMG_MANIFEST_MAX_SIZE. */
int img_manifest_parse(const char *data, size_t len, struct img_manifest **ret, char *err,
                       size_t errlen);

/* Compact JSON, keys in the spec's order, NUL-terminated (ret_len excludes
 * the NUL). Caller frees *ret. -EINVAL if the manifest does not validate. */
int img_manifest_serialize(const struct img_manifest *m, char **ret, size_t *ret_len);

/* Appends a pack, or returns the index of an existing pack with the same id
 * (its size must match: -EINVAL otherwise). */
int img_manifest_add_pack(struct img_manifest *m, const char *id, uint64_t size,
                          uint32_t *ret_index);

/* Appends a chunk (amortised growth). Does not check order: the caller adds
 * in offset order and img_manifest_validate()/parse check everything. */
int img_manifest_add_chunk(struct img_manifest *m, const struct img_chunk *c);

/* Appends a display-only partition entry. */
int img_manifest_add_partition(struct img_manifest *m, const struct img_partition *p);

/* Checks every rule of the spec. 0 or -EINVAL with a message. */
int img_manifest_validate(const struct img_manifest *m, char *err, size_t errlen);

/* Sum of stored_len over distinct (pack, pack_offset) pairs. */
uint64_t img_manifest_stored_bytes(const struct img_manifest *m);

/* source_sha256 as the chunk list implies it: SHA-256 over the SHA-256 of
 * every chunk_size piece of the disk in order, zero pieces included (their
 * hash is computed once per length). -E2BIG when the disk has more than
 * IMG_SOURCE_HASH_MAX_PIECES pieces (a hostile size would cost hours). */
#define IMG_SOURCE_HASH_MAX_PIECES (1ULL << 28)
int img_manifest_source_hash(const struct img_manifest *m, uint8_t ret[32]);

/* Logical bytes stored (sum of chunk lengths, i.e. the non-zero data). */
uint64_t img_manifest_data_bytes(const struct img_manifest *m);

/* True for [A-Za-z0-9._+-]{1,64} not starting with '.': names, versions
 * and architectures become path components (images/<name>/<version>...),
 * so "." and ".." must never pass. */
/* Parses len bytes of JSON (at most cap, duplicate keys refused) for the
 * manifest and catalogue parsers; what names the document in err.
 * -EFBIG over the cap, -EINVAL for bad JSON. */
struct json_t;
int img_json_load(const char *data, size_t len, unsigned long long cap, const char *what,
                  struct json_t **ret, char *err, size_t errlen);

bool img_name_is_valid(const char *s);

/* True for exactly 64 lowercase hex characters. */
bool img_sha256_hex_is_valid(const char *s);
