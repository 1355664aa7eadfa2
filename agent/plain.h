/* Plain images (raw disks, compressed or not) and rootfs tarballs from the
 * signed catalogue of a repository, written onto a disk. See agent/plain.c
 * (raw) and agent/rootfs.c (tarballs). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/hosts.h"

struct archive;
struct archive_entry;
struct agent_stream;
struct rb_key;
struct img_cat_plain;

struct agent_plain_opts {
	const char *repo;                 /* http(s) base URL of the repository */
	const struct rb_key *const *pubs; /* trusted keys, any one verifies */
	size_t n_pubs;
	const char *name, *version; /* catalogue entry (plain kind) */
	const char *target;         /* block device or file */
	const char *fstype;         /* rootfs only: "ext4" (default) or "xfs" */
	bool progress;              /* progress lines on stderr */
	/* Called (if set) from the thread running agent_plain_write() every few
	 * hundred ms and at the end: bytes of the stored (compressed) file
	 * received so far, out of its size in the catalogue. */
	void (*progress_cb)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	unsigned timeout_s; /* connect timeout and low-speed window; 0 = 30 */
	unsigned retries;   /* failed requests in a row before giving up; 0 = 4 */
	/* Hosts the catalogue and the file may come from, redirects included
	 * (agent/hosts.h); NULL: only the repository's. */
	const struct agent_hosts *hosts;
};

struct agent_plain_stats {
	uint64_t fetched_bytes; /* HTTP bodies: catalogue, signature, the file */
	uint64_t written_bytes; /* raw: image bytes (holes included); rootfs: file data */
	uint64_t usec;
};

/* The compression of a catalogue kind. */
enum agent_plain_filter {
	AGENT_PLAIN_NONE,
	AGENT_PLAIN_GZIP,
	AGENT_PLAIN_XZ,
	AGENT_PLAIN_ZSTD,
};

/* Parses a catalogue kind ("raw", "raw.gz", "raw.xz", "raw.zst", "tar",
 * "tar.gz", "tar.xz", "tar.zst"). -EINVAL for anything else. */
int agent_plain_kind_parse(const char *kind, bool *ret_tar, enum agent_plain_filter *ret_filter);

/* Writes base + "/" + path into buf, percent-encoding every byte of path
 * but [A-Za-z0-9._~+/-]. -ENAMETOOLONG if it does not fit. */
int agent_url_join(const char *base, const char *path, char *buf, size_t len);

/* True if len bytes at p are all zero. */
bool agent_is_zero(const void *p, size_t len);

/* Checks the head of a raw kind's decompressed data (the first bytes of
 * the disk image, up to IMG_DETECT_HEAD are looked at) before anything is
 * written: a virtual-disk container (qcow2, VMDK, VHD, ...: the formats
 * common/imgformat.c refuses) or data that is still compressed or a
 * tarball is refused. 0, or -EINVAL with a reason naming url and kind
 * (the catalogue's) and the conversion to make. */
int agent_plain_check_head(const void *head, size_t len, const char *url, const char *kind,
                           char *err, size_t errlen);

/* Fetches catalog.json and catalog.json.sig (size-capped), verifies the
 * signature with the trusted keys before parsing, and copies the plain
 * entry name/version into *ret. -ENOENT if there is none (the message says
 * when name/version is a rackboot image instead), -EBADMSG for a signature
 * that does not verify. *ret_fetched (may be NULL) gets the bytes fetched. */
int agent_plain_lookup(const struct agent_plain_opts *o, struct img_cat_plain *ret,
                       uint64_t *ret_fetched, char *err, size_t errlen);

/* Writes the plain entry name/version onto the target: a raw kind as a
 * disk image (file or block device), a tar kind as a fresh GPT disk (ESP +
 * root filesystem, block device only) with the tarball extracted into the
 * root. 0, or -errno with a one-line reason in err. On failure after the
 * target was touched, it holds no valid MBR or GPT. The caller must have
 * called curl_global_init(). A tar kind changes the process's working
 * directory while it extracts (restored before returning): other threads
 * must not use relative paths meanwhile. */
int agent_plain_write(const struct agent_plain_opts *o, struct agent_plain_stats *ret, char *err,
                      size_t errlen);

/* Shared with agent/rootfs.c. */

/* Formats a one-line reason into err (if err and errlen) and returns e. */
int agent_errf(char *err, size_t errlen, int e, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Opens a libarchive reader on the stream: format raw (tar if tar), only
 * the filter f (libarchive's external-program fallback is refused), and
 * reads the first header into *ret_entry; the data must be compressed as
 * f says. 0 with *ret (the caller frees it), or -errno with a reason
 * (diagnosed as agent_plain_read_failed() does). */
int agent_plain_open(struct agent_stream *s, bool tar, enum agent_plain_filter f, const char *url,
                     const char *kind, struct archive **ret, struct archive_entry **ret_entry,
                     char *err, size_t errlen);

/* A libarchive read failed (what: "decompression", "extraction"): reads
 * the rest of the file so that the reason given is the real one (download
 * failure, size or hash mismatch) where there is one, else the decoder's.
 * Returns the -errno to fail with; the message is in err. */
int agent_plain_read_failed(struct agent_stream *s, struct archive *a, const char *url,
                            const char *what, char *err, size_t errlen);

/* Reports progress (bytes of the stored file received out of total) to
 * o->progress_cb every 250 ms at most, and as a line on stderr if
 * o->progress (every 0.5 s on a terminal, 5 s otherwise); final: always.
 * *last: the time of the last report, 0 at first. */
void agent_plain_progress(const struct agent_plain_opts *o, const char *what, uint64_t done,
                          uint64_t total, uint64_t t0, uint64_t *last, bool final);

/* The "plain" command: argv[0] is "plain". Exit code 0, 1 or 2. */
int agent_cmd_plain(int argc, char **argv);
