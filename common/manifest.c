/* Image manifest: struct <-> JSON, and every rule of format rackboot-image/1.
 *
 * Parsing runs in two steps: a typed conversion from the jansson tree into
 * struct img_manifest (types, string lengths, counts bounded before any
 * allocation), then img_manifest_validate() on the struct for the semantic
 * rules (order, alignment, bounds against disk and packs). The builder calls
 * the same validate() before serialising, so a manifest this library writes
 * is one it will read back, field for field.
 *
 * Owns nothing global. Pure: no I/O, no logging; errors go to the caller's
 * buffer with the field (and chunk index) named. Input sizes are capped
 * (IMG_MANIFEST_MAX_SIZE; chunk count by disk_size/chunk_size) so a hostile
 * manifest cannot make the parser allocate without bound. */
#include "common/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "common/sha256.h"
#include "common/util.h"

#define PACK_SIZE_MAX (1ULL << 56)

int img_json_load(const char *data, size_t len, unsigned long long cap, const char *what,
                  json_t **ret, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;

	if (len > cap) {
		rb_errf(err, errlen, "%s: %zu bytes, more than the %llu byte limit", what, len,
		        cap);
		return -EFBIG;
	}
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return rb_errf(err, errlen, "%s: not JSON: %s at line %d column %d", what,
		               jerr.text, jerr.line, jerr.column);
	*ret = root;
	return 0;
}

bool img_name_is_valid(const char *s)
{
	size_t n = 0;

	if (!s || s[0] == '.' || s[0] == '\0')
		return false;
	for (; s[n]; n++) {
		char c = s[n];

		if (n >= IMG_NAME_MAX)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '+' || c == '-'))
			return false;
	}
	return true;
}

bool img_sha256_hex_is_valid(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		if (n >= 64)
			return false;
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	}
	return n == 64;
}

static void hex32(const uint8_t in[32], char out[65])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < 32; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[64] = '\0';
}

static void unhex32(const char *hex, uint8_t out[32])
{
	/* Only called on strings that passed img_sha256_hex_is_valid(). */
	for (size_t i = 0; i < 32; i++) {
		char h = hex[2 * i], l = hex[2 * i + 1];
		int hi = h <= '9' ? h - '0' : h - 'a' + 10;
		int lo = l <= '9' ? l - '0' : l - 'a' + 10;

		out[i] = (uint8_t)(hi << 4 | lo);
	}
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int img_manifest_new(struct img_manifest **ret)
{
	struct img_manifest *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	memcpy(m->table, "none", 5);
	*ret = m;
	return 0;
}

void img_manifest_free(struct img_manifest *m)
{
	if (!m)
		return;
	free(m->parts);
	free(m->packs);
	free(m->chunks);
	free(m);
}

/* ---- validation ---- */

static uint64_t max_chunks(uint64_t disk_size, uint32_t chunk_size)
{
	return chunk_size ? (disk_size + chunk_size - 1) / chunk_size : 0;
}

static bool table_is_valid(const char *t)
{
	return !strcmp(t, "gpt") || !strcmp(t, "mbr") || !strcmp(t, "none");
}

static int cmp_pack_ptr(const void *a, const void *b)
{
	const struct img_pack *const *pa = a, *const *pb = b;

	return strcmp((*pa)->id, (*pb)->id);
}

static int validate_packs(const struct img_manifest *m, char *err, size_t errlen)
{
	const struct img_pack **sorted;

	if (m->n_packs > IMG_MAX_PACKS)
		return rb_errf(err, errlen, "packs: %zu entries, more than %u", m->n_packs,
		               IMG_MAX_PACKS);
	for (size_t i = 0; i < m->n_packs; i++) {
		if (!img_sha256_hex_is_valid(m->packs[i].id))
			return rb_errf(err, errlen,
			               "packs[%zu].id: not 64 lowercase hex characters", i);
		if (m->packs[i].size == 0 || m->packs[i].size > PACK_SIZE_MAX)
			return rb_errf(err, errlen, "packs[%zu].size: %" PRIu64 " out of range", i,
			               m->packs[i].size);
	}
	if (m->n_packs < 2)
		return 0;
	sorted = malloc(m->n_packs * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_packs; i++)
		sorted[i] = &m->packs[i];
	qsort(sorted, m->n_packs, sizeof(*sorted), cmp_pack_ptr);
	for (size_t i = 1; i < m->n_packs; i++) {
		if (!strcmp(sorted[i - 1]->id, sorted[i]->id)) {
			size_t a = (size_t)(sorted[i - 1] - m->packs),
			       b = (size_t)(sorted[i] - m->packs);

			free(sorted);
			return rb_errf(err, errlen, "packs[%zu].id: duplicate of packs[%zu]",
			               RB_MAX(a, b), RB_MIN(a, b));
		}
	}
	free(sorted);
	return 0;
}

static int validate_chunk(const struct img_manifest *m, size_t i, uint64_t prev_end, char *err,
                          size_t errlen)
{
	const struct img_chunk *c = &m->chunks[i];
	const struct img_pack *p;
	size_t bound = ZSTD_compressBound(m->chunk_size);

	if (c->offset % m->chunk_size != 0)
		return rb_errf(err, errlen,
		               "chunks[%zu].offset: %" PRIu64
		               " is not a multiple of chunk_size %" PRIu32,
		               i, c->offset, m->chunk_size);
	if (i > 0 && c->offset < prev_end)
		return rb_errf(err, errlen,
		               "chunks[%zu].offset: %" PRIu64
		               " overlaps or precedes chunks[%zu] (ends at %" PRIu64 ")",
		               i, c->offset, i - 1, prev_end);
	if (c->offset >= m->disk_size)
		return rb_errf(err, errlen,
		               "chunks[%zu].offset: %" PRIu64 " is past disk_size %" PRIu64, i,
		               c->offset, m->disk_size);
	if (c->length == 0 || c->length > m->chunk_size)
		return rb_errf(err, errlen,
		               "chunks[%zu].length: %" PRIu32 " not in (0, chunk_size %" PRIu32 "]",
		               i, c->length, m->chunk_size);
	if (c->length > m->disk_size - c->offset)
		return rb_errf(err, errlen,
		               "chunks[%zu].length: chunk ends at %" PRIu64
		               ", past disk_size %" PRIu64,
		               i, c->offset + c->length, m->disk_size);
	if (c->length != m->chunk_size && c->offset + c->length != m->disk_size)
		return rb_errf(err, errlen,
		               "chunks[%zu].length: %" PRIu32
		               " is short but the chunk is not the disk's last",
		               i, c->length);
	if (c->pack >= m->n_packs)
		return rb_errf(err, errlen, "chunks[%zu].pack: index %" PRIu32 " but %zu packs", i,
		               c->pack, m->n_packs);
	p = &m->packs[c->pack];
	if (c->stored_len == 0 || c->stored_len > bound)
		return rb_errf(err, errlen,
		               "chunks[%zu].stored_length: %" PRIu32 " not in (0, %zu]", i,
		               c->stored_len, bound);
	if (c->pack_offset > p->size || c->stored_len > p->size - c->pack_offset)
		return rb_errf(err, errlen,
		               "chunks[%zu].pack_offset: %" PRIu64 "+%" PRIu32
		               " is past the end of packs[%" PRIu32 "] (size %" PRIu64 ")",
		               i, c->pack_offset, c->stored_len, c->pack, p->size);
	return 0;
}

/* Everything but the chunk list: checked before the chunks are parsed, since
 * the chunk count bound depends on disk_size and chunk_size. */
static int validate_header(const struct img_manifest *m, char *err, size_t errlen)
{
	if (!img_name_is_valid(m->name))
		return rb_errf(err, errlen,
		               "name: must match [A-Za-z0-9._+-]{1,64}, not start with '.'");
	if (!img_name_is_valid(m->version))
		return rb_errf(err, errlen,
		               "version: must match [A-Za-z0-9._+-]{1,64}, not start with '.'");
	if (m->disk_size == 0 || m->disk_size > IMG_DISK_SIZE_MAX || m->disk_size % 512 != 0)
		return rb_errf(err, errlen,
		               "disk_size: %" PRIu64 " must be > 0, <= 2^50 and a multiple of 512",
		               m->disk_size);
	if (m->chunk_size < IMG_CHUNK_SIZE_MIN || m->chunk_size > IMG_CHUNK_SIZE_MAX ||
	    (m->chunk_size & (m->chunk_size - 1)) != 0)
		return rb_errf(err, errlen,
		               "chunk_size: %" PRIu32 " must be a power of two in [4096, 16777216]",
		               m->chunk_size);
	if (!img_sha256_hex_is_valid(m->source_sha256))
		return rb_errf(err, errlen, "source_sha256: not 64 lowercase hex characters");
	if (!table_is_valid(m->table))
		return rb_errf(err, errlen,
		               "partitions.table: must be \"gpt\", \"mbr\" or \"none\"");
	if (m->n_parts > IMG_MAX_PARTS)
		return rb_errf(err, errlen, "partitions.entries: %zu entries, more than %d",
		               m->n_parts, IMG_MAX_PARTS);
	if (m->n_parts > 0 && !strcmp(m->table, "none"))
		return rb_errf(err, errlen, "partitions.entries: table \"none\" has entries");
	for (size_t i = 0; i < m->n_parts; i++) {
		const struct img_partition *p = &m->parts[i];

		if (p->index == 0 || p->index > 4096)
			return rb_errf(err, errlen,
			               "partitions.entries[%zu].index: %u out of range", i,
			               p->index);
		if (p->start > m->disk_size || p->size > m->disk_size - p->start)
			return rb_errf(err, errlen, "partitions.entries[%zu]: ends past disk_size",
			               i);
		if (memchr(p->type, '\0', sizeof(p->type)) == NULL || !p->type[0] ||
		    !printable(p->type))
			return rb_errf(err, errlen,
			               "partitions.entries[%zu].type: empty or not printable", i);
		if (memchr(p->name, '\0', sizeof(p->name)) == NULL || !printable(p->name))
			return rb_errf(err, errlen, "partitions.entries[%zu].name: not printable",
			               i);
	}
	return validate_packs(m, err, errlen);
}

static int validate_chunks(const struct img_manifest *m, char *err, size_t errlen)
{
	uint64_t prev_end = 0;
	int r;

	if (m->n_chunks > max_chunks(m->disk_size, m->chunk_size))
		return rb_errf(err, errlen,
		               "chunks: %zu entries, more than disk_size/chunk_size allows",
		               m->n_chunks);
	for (size_t i = 0; i < m->n_chunks; i++) {
		r = validate_chunk(m, i, prev_end, err, errlen);
		if (r < 0)
			return r;
		prev_end = m->chunks[i].offset + m->chunks[i].length;
	}
	return 0;
}

int img_manifest_validate(const struct img_manifest *m, char *err, size_t errlen)
{
	int r = validate_header(m, err, errlen);

	if (r < 0)
		return r;
	return validate_chunks(m, err, errlen);
}

/* ---- building ---- */

/* The struct has no capacity fields (its layout is the shared API), so the
 * capacity of every array is implicit: 0 for n == 0, else the larger of 16
 * and the next power of two >= n. Parsing allocates by the same rule
 * (array_alloc) so that add_*() may follow a parse. */
static size_t implicit_cap(size_t n)
{
	size_t cap = 16;

	if (n == 0)
		return 0;
	while (cap < n)
		cap *= 2;
	return cap;
}

static void *array_alloc(size_t n, size_t sz)
{
	size_t cap = implicit_cap(n);

	if (cap == 0 || cap > SIZE_MAX / sz)
		return NULL;
	return calloc(cap, sz);
}

/* Makes room in *arr (holding n elements of size sz) for one more. */
static int grow(void **arr, size_t n, size_t sz)
{
	size_t cap = implicit_cap(n);
	void *p;

	if (n < cap)
		return 0;
	cap = n == 0 ? 16 : cap * 2;
	if (cap > SIZE_MAX / sz)
		return -ENOMEM;
	p = realloc(*arr, cap * sz);
	if (!p)
		return -ENOMEM;
	*arr = p;
	return 0;
}

int img_manifest_add_pack(struct img_manifest *m, const char *id, uint64_t size,
                          uint32_t *ret_index)
{
	int r;

	if (!img_sha256_hex_is_valid(id))
		return -EINVAL;
	for (size_t i = 0; i < m->n_packs; i++) {
		if (!strcmp(m->packs[i].id, id)) {
			if (m->packs[i].size != size)
				return -EINVAL;
			if (ret_index)
				*ret_index = (uint32_t)i;
			return 0;
		}
	}
	if (m->n_packs >= IMG_MAX_PACKS)
		return -E2BIG;
	r = grow((void **)&m->packs, m->n_packs, sizeof(*m->packs));
	if (r < 0)
		return r;
	memcpy(m->packs[m->n_packs].id, id, 65);
	m->packs[m->n_packs].size = size;
	if (ret_index)
		*ret_index = (uint32_t)m->n_packs;
	m->n_packs++;
	return 0;
}

int img_manifest_add_chunk(struct img_manifest *m, const struct img_chunk *c)
{
	int r = grow((void **)&m->chunks, m->n_chunks, sizeof(*m->chunks));

	if (r < 0)
		return r;
	m->chunks[m->n_chunks++] = *c;
	return 0;
}

int img_manifest_add_partition(struct img_manifest *m, const struct img_partition *p)
{
	int r;

	if (m->n_parts >= IMG_MAX_PARTS)
		return -E2BIG;
	r = grow((void **)&m->parts, m->n_parts, sizeof(*m->parts));
	if (r < 0)
		return r;
	m->parts[m->n_parts++] = *p;
	return 0;
}

struct span {
	uint64_t pack_offset;
	uint32_t pack;
	uint32_t len;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	if (x->pack_offset != y->pack_offset)
		return x->pack_offset < y->pack_offset ? -1 : 1;
	return 0;
}

int img_manifest_source_hash(const struct img_manifest *m, uint8_t ret[32])
{
	uint64_t pieces = (m->disk_size + m->chunk_size - 1) / m->chunk_size, tail;
	uint8_t zero[32], zero_tail[32], *buf;
	EVP_MD_CTX *md;
	size_t next = 0;
	int e = 0;

	if (m->chunk_size == 0 || pieces > IMG_SOURCE_HASH_MAX_PIECES)
		return -E2BIG;
	tail = m->disk_size - (pieces - 1) * m->chunk_size;
	buf = calloc(1, m->chunk_size);
	md = EVP_MD_CTX_new();
	if (!buf || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		e = -ENOMEM;
		goto out;
	}
	rb_sha256(buf, m->chunk_size, zero);
	rb_sha256(buf, (size_t)tail, zero_tail);
	for (uint64_t i = 0; i < pieces; i++) {
		const uint8_t *h = i + 1 < pieces ? zero : zero_tail;

		if (next < m->n_chunks && m->chunks[next].offset == i * m->chunk_size)
			h = m->chunks[next++].sha256;
		EVP_DigestUpdate(md, h, 32);
	}
	EVP_DigestFinal_ex(md, ret, NULL);
out:
	EVP_MD_CTX_free(md);
	free(buf);
	return e;
}

uint64_t img_manifest_stored_bytes(const struct img_manifest *m)
{
	struct span *s;
	uint64_t total = 0;

	if (m->n_chunks == 0)
		return 0;
	s = malloc(m->n_chunks * sizeof(*s));
	if (!s) {
		/* Without memory to deduplicate, the plain sum is an upper bound. */
		for (size_t i = 0; i < m->n_chunks; i++)
			total += m->chunks[i].stored_len;
		return total;
	}
	for (size_t i = 0; i < m->n_chunks; i++) {
		s[i].pack = m->chunks[i].pack;
		s[i].pack_offset = m->chunks[i].pack_offset;
		s[i].len = m->chunks[i].stored_len;
	}
	qsort(s, m->n_chunks, sizeof(*s), cmp_span);
	for (size_t i = 0; i < m->n_chunks; i++)
		if (i == 0 || cmp_span(&s[i - 1], &s[i]) != 0)
			total += s[i].len;
	free(s);
	return total;
}

uint64_t img_manifest_data_bytes(const struct img_manifest *m)
{
	uint64_t total = 0;

	for (size_t i = 0; i < m->n_chunks; i++)
		total += m->chunks[i].length;
	return total;
}

/* ---- parsing ---- */

struct perr {
	char *buf;
	size_t len;
};

static json_t *need(struct perr *e, json_t *obj, const char *where, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		rb_errf(e->buf, e->len, "%s%s: missing field", where, key);
	return v;
}

static int get_uint(struct perr *e, json_t *v, const char *where, const char *key, uint64_t max,
                    uint64_t *out)
{
	json_int_t x;

	if (!json_is_integer(v))
		return rb_errf(e->buf, e->len, "%s%s: expected an integer", where, key);
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x > max)
		return rb_errf(e->buf, e->len, "%s%s: %lld out of range [0, %" PRIu64 "]", where,
		               key, (long long)x, max);
	*out = (uint64_t)x;
	return 0;
}

static int field_uint(struct perr *e, json_t *obj, const char *where, const char *key, uint64_t max,
                      uint64_t *out)
{
	json_t *v = need(e, obj, where, key);

	if (!v)
		return -EINVAL;
	return get_uint(e, v, where, key, max, out);
}

/* Copies a JSON string into dst[dstsize]; refuses embedded NULs and
 * strings that do not fit. */
static int get_str(struct perr *e, json_t *v, const char *where, const char *key, char *dst,
                   size_t dstsize)
{
	size_t n;

	if (!json_is_string(v))
		return rb_errf(e->buf, e->len, "%s%s: expected a string", where, key);
	n = json_string_length(v);
	if (n >= dstsize)
		return rb_errf(e->buf, e->len, "%s%s: longer than %zu bytes", where, key,
		               dstsize - 1);
	if (memchr(json_string_value(v), '\0', n))
		return rb_errf(e->buf, e->len, "%s%s: contains a NUL byte", where, key);
	memcpy(dst, json_string_value(v), n + 1);
	return 0;
}

static int field_str(struct perr *e, json_t *obj, const char *where, const char *key, char *dst,
                     size_t dstsize)
{
	json_t *v = need(e, obj, where, key);

	if (!v)
		return -EINVAL;
	return get_str(e, v, where, key, dst, dstsize);
}

static json_t *field_array(struct perr *e, json_t *obj, const char *where, const char *key)
{
	json_t *v = need(e, obj, where, key);

	if (v && !json_is_array(v)) {
		rb_errf(e->buf, e->len, "%s%s: expected an array", where, key);
		return NULL;
	}
	return v;
}

static int parse_partitions(struct perr *e, json_t *root, struct img_manifest *m)
{
	json_t *parts = json_object_get(root, "partitions"), *entries, *v;
	size_t i;
	int r;

	/* Optional: a manifest without it has no partition table to show. */
	if (!parts)
		return 0;
	if (!json_is_object(parts))
		return rb_errf(e->buf, e->len, "partitions: expected an object");
	r = field_str(e, parts, "partitions.", "table", m->table, sizeof(m->table));
	if (r < 0)
		return r;
	entries = field_array(e, parts, "partitions.", "entries");
	if (!entries)
		return -EINVAL;
	if (json_array_size(entries) > IMG_MAX_PARTS)
		return rb_errf(e->buf, e->len, "partitions.entries: %zu entries, more than %d",
		               json_array_size(entries), IMG_MAX_PARTS);
	if (json_array_size(entries) == 0)
		return 0;
	m->parts = array_alloc(json_array_size(entries), sizeof(*m->parts));
	if (!m->parts)
		return -ENOMEM;
	json_array_foreach(entries, i, v)
	{
		struct img_partition *p = &m->parts[i];
		char where[48];
		uint64_t x;

		snprintf(where, sizeof(where), "partitions.entries[%zu].", i);
		if (!json_is_object(v))
			return rb_errf(e->buf, e->len,
			               "partitions.entries[%zu]: expected an object", i);
		if ((r = field_uint(e, v, where, "index", 4096, &x)) < 0)
			return r;
		p->index = (unsigned)x;
		if ((r = field_uint(e, v, where, "start", IMG_DISK_SIZE_MAX, &p->start)) < 0 ||
		    (r = field_uint(e, v, where, "size", IMG_DISK_SIZE_MAX, &p->size)) < 0 ||
		    (r = field_str(e, v, where, "type", p->type, sizeof(p->type))) < 0 ||
		    (r = field_str(e, v, where, "name", p->name, sizeof(p->name))) < 0)
			return r;
		m->n_parts++;
	}
	return 0;
}

static int parse_packs(struct perr *e, json_t *root, struct img_manifest *m)
{
	json_t *packs = field_array(e, root, "", "packs"), *v;
	size_t i;
	int r;

	if (!packs)
		return -EINVAL;
	if (json_array_size(packs) > IMG_MAX_PACKS)
		return rb_errf(e->buf, e->len, "packs: %zu entries, more than %u",
		               json_array_size(packs), IMG_MAX_PACKS);
	if (json_array_size(packs) == 0)
		return 0;
	m->packs = array_alloc(json_array_size(packs), sizeof(*m->packs));
	if (!m->packs)
		return -ENOMEM;
	json_array_foreach(packs, i, v)
	{
		char where[32];

		snprintf(where, sizeof(where), "packs[%zu].", i);
		if (!json_is_object(v))
			return rb_errf(e->buf, e->len, "packs[%zu]: expected an object", i);
		if ((r = field_str(e, v, where, "id", m->packs[i].id, sizeof(m->packs[i].id))) <
		            0 ||
		    (r = field_uint(e, v, where, "size", PACK_SIZE_MAX, &m->packs[i].size)) < 0)
			return r;
		m->n_packs++;
	}
	return 0;
}

static int parse_chunk(struct perr *e, json_t *v, size_t i, struct img_chunk *c)
{
	static const char *const names[6] = { "offset", "length",      "sha256",
		                              "pack",   "pack_offset", "stored_length" };
	uint64_t x[6];
	char where[40];
	int r;

	snprintf(where, sizeof(where), "chunks[%zu].", i);
	if (!json_is_array(v) || json_array_size(v) != 6)
		return rb_errf(e->buf, e->len,
		               "chunks[%zu]: expected [offset, length, sha256, pack, pack_offset, "
		               "stored_length]",
		               i);
	for (size_t k = 0; k < 6; k++) {
		if (k == 2)
			continue;
		r = get_uint(e, json_array_get(v, k), where, names[k],
		             k == 0 || k == 4 ? PACK_SIZE_MAX : UINT32_MAX, &x[k]);
		if (r < 0)
			return r;
	}
	if (!json_is_string(json_array_get(v, 2)) ||
	    !img_sha256_hex_is_valid(json_string_value(json_array_get(v, 2))) ||
	    json_string_length(json_array_get(v, 2)) != 64)
		return rb_errf(e->buf, e->len,
		               "chunks[%zu].sha256: not 64 lowercase hex characters", i);
	c->offset = x[0];
	c->length = (uint32_t)x[1];
	unhex32(json_string_value(json_array_get(v, 2)), c->sha256);
	c->pack = (uint32_t)x[3];
	c->pack_offset = x[4];
	c->stored_len = (uint32_t)x[5];
	return 0;
}

static int parse_root(struct perr *e, json_t *root, struct img_manifest *m)
{
	char format[32];
	json_t *chunks, *v, *created;
	uint64_t x;
	size_t i;
	int r;

	if (!json_is_object(root))
		return rb_errf(e->buf, e->len, "manifest: expected a JSON object");
	if ((r = field_str(e, root, "", "format", format, sizeof(format))) < 0)
		return r;
	if (strcmp(format, IMG_MANIFEST_FORMAT) != 0)
		return rb_errf(e->buf, e->len,
		               "format: \"%s\" is not " IMG_MANIFEST_FORMAT
		               " (made by a newer rackboot-image?)",
		               format);
	if ((r = field_str(e, root, "", "name", m->name, sizeof(m->name))) < 0 ||
	    (r = field_str(e, root, "", "version", m->version, sizeof(m->version))) < 0 ||
	    (r = field_uint(e, root, "", "disk_size", IMG_DISK_SIZE_MAX, &m->disk_size)) < 0 ||
	    (r = field_uint(e, root, "", "chunk_size", IMG_CHUNK_SIZE_MAX, &x)) < 0)
		return r;
	m->chunk_size = (uint32_t)x;
	created = need(e, root, "", "created");
	if (!created)
		return -EINVAL;
	if (!json_is_integer(created))
		return rb_errf(e->buf, e->len, "created: expected an integer");
	m->created = json_integer_value(created);
	if ((r = field_str(e, root, "", "source_sha256", m->source_sha256,
	                   sizeof(m->source_sha256))) < 0)
		return r;
	if ((r = parse_partitions(e, root, m)) < 0 || (r = parse_packs(e, root, m)) < 0)
		return r;
	if ((r = validate_header(m, e->buf, e->len)) < 0)
		return r;

	chunks = field_array(e, root, "", "chunks");
	if (!chunks)
		return -EINVAL;
	/* The count is bounded before anything is allocated for it. */
	if (json_array_size(chunks) > max_chunks(m->disk_size, m->chunk_size))
		return rb_errf(e->buf, e->len,
		               "chunks: %zu entries, more than disk_size/chunk_size allows",
		               json_array_size(chunks));
	if (json_array_size(chunks) > 0) {
		m->chunks = array_alloc(json_array_size(chunks), sizeof(*m->chunks));
		if (!m->chunks)
			return -ENOMEM;
	}
	json_array_foreach(chunks, i, v)
	{
		if ((r = parse_chunk(e, v, i, &m->chunks[i])) < 0)
			return r;
		m->n_chunks++;
	}
	return validate_chunks(m, e->buf, e->len);
}

int img_manifest_parse(const char *data, size_t len, struct img_manifest **ret, char *err,
                       size_t errlen)
{
	struct perr e = { err, errlen };
	struct img_manifest *m;
	json_t *root;
	int r;

	r = img_json_load(data, len, IMG_MANIFEST_MAX_SIZE, "manifest", &root, err, errlen);
	if (r < 0)
		return r;
	r = img_manifest_new(&m);
	if (r < 0)
		goto out;
	r = parse_root(&e, root, m);
	if (r < 0) {
		img_manifest_free(m);
		goto out;
	}
	*ret = m;
out:
	json_decref(root);
	return r;
}

/* ---- serialising ---- */

static int set_new(json_t *obj, const char *key, json_t *v)
{
	/* json_object_set_new steals v even on failure. */
	return v && json_object_set_new(obj, key, v) == 0 ? 0 : -ENOMEM;
}

static int append_new(json_t *arr, json_t *v)
{
	return v && json_array_append_new(arr, v) == 0 ? 0 : -ENOMEM;
}

static json_t *build_json(const struct img_manifest *m)
{
	json_t *root = json_object(), *parts = NULL, *arr;
	char hex[65];

	if (!root)
		return NULL;
	if (set_new(root, "format", json_string(IMG_MANIFEST_FORMAT)) < 0 ||
	    set_new(root, "name", json_string(m->name)) < 0 ||
	    set_new(root, "version", json_string(m->version)) < 0 ||
	    set_new(root, "disk_size", json_integer((json_int_t)m->disk_size)) < 0 ||
	    set_new(root, "chunk_size", json_integer(m->chunk_size)) < 0 ||
	    set_new(root, "created", json_integer(m->created)) < 0 ||
	    set_new(root, "source_sha256", json_string(m->source_sha256)) < 0)
		goto err;
	parts = json_object();
	if (set_new(root, "partitions", parts) < 0 ||
	    set_new(parts, "table", json_string(m->table)) < 0 ||
	    set_new(parts, "entries", arr = json_array()) < 0)
		goto err;
	for (size_t i = 0; i < m->n_parts; i++) {
		const struct img_partition *p = &m->parts[i];

		if (append_new(arr,
		               json_pack("{s:I,s:I,s:I,s:s,s:s}", "index", (json_int_t)p->index,
		                         "start", (json_int_t)p->start, "size", (json_int_t)p->size,
		                         "type", p->type, "name", p->name)) < 0)
			goto err;
	}
	if (set_new(root, "packs", arr = json_array()) < 0)
		goto err;
	for (size_t i = 0; i < m->n_packs; i++)
		if (append_new(arr, json_pack("{s:s,s:I}", "id", m->packs[i].id, "size",
		                              (json_int_t)m->packs[i].size)) < 0)
			goto err;
	if (set_new(root, "chunks", arr = json_array()) < 0)
		goto err;
	for (size_t i = 0; i < m->n_chunks; i++) {
		const struct img_chunk *c = &m->chunks[i];

		hex32(c->sha256, hex);
		if (append_new(arr, json_pack("[I,I,s,I,I,I]", (json_int_t)c->offset,
		                              (json_int_t)c->length, hex, (json_int_t)c->pack,
		                              (json_int_t)c->pack_offset,
		                              (json_int_t)c->stored_len)) < 0)
			goto err;
	}
	return root;
err:
	json_decref(root);
	return NULL;
}

int img_manifest_serialize(const struct img_manifest *m, char **ret, size_t *ret_len)
{
	json_t *root;
	char *s;
	int r;

	r = img_manifest_validate(m, NULL, 0);
	if (r < 0)
		return r;
	root = build_json(m);
	if (!root)
		return -ENOMEM;
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!s)
		return -ENOMEM;
	*ret = s;
	*ret_len = strlen(s);
	return 0;
}
