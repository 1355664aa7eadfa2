/* extract: the raw disk image back out of the repository.
 *
 * Nothing is written before the manifest's signature verifies, and no
 * chunk is written before its own SHA-256 does (img_chunk_read), so a
 * damaged repository cannot put unverified bytes on a disk. A regular
 * output file is truncated to the disk size first: ranges the manifest
 * does not store are holes and read back as zeros. On a block device,
 * those ranges are written with zeros, since the old contents must not
 * survive a reimage. The agent's stage 1 reuses this logic over HTTP. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "common/util.h"

#include "chunker.h"
#include "extract.h"
#include "verify.h"

static int write_zeros(int fd, const uint8_t *zeros, size_t zlen, uint64_t from, uint64_t to)
{
	while (from < to) {
		size_t n = (size_t)(to - from < zlen ? to - from : zlen);
		int e = rb_pwrite_all(fd, zeros, n, from);
		if (e < 0)
			return e;
		from += n;
	}
	return 0;
}

int img_extract(struct img_repo *r, const struct rb_key *const *pubs, size_t n_pubs,
                const char *name, const char *version, const char *out_path, int progress,
                char *err, size_t errlen)
{
	struct img_manifest *m = NULL;
	struct img_chunk_reader *cr = NULL;
	struct img_progress prog;
	uint8_t *buf = NULL, *zeros = NULL;
	uint64_t pos = 0;
	struct stat st;
	bool created = false, blk;
	int fd = -1, e;

	if (n_pubs == 0) {
		snprintf(err, errlen, "no trusted public key given (--pub)");
		return -EINVAL;
	}
	e = img_repo_load_manifest(r, name, version, pubs, n_pubs, &m, NULL, NULL, err, errlen);
	if (e < 0)
		return e;
	e = img_chunk_reader_new(r, m, &cr);
	buf = malloc(m->chunk_size);
	zeros = calloc(1, m->chunk_size);
	if (e < 0 || !buf || !zeros) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	fd = open(out_path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		created = fd >= 0;
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", out_path, strerror(-e));
		goto out;
	}
	blk = S_ISBLK(st.st_mode);
	if (blk) {
		uint64_t dev_size = 0;
		if (ioctl(fd, BLKGETSIZE64, &dev_size) < 0 || dev_size < m->disk_size) {
			e = -ENOSPC;
			snprintf(err, errlen, "%s: device has %llu bytes, the image needs %llu",
			         out_path, (unsigned long long)dev_size,
			         (unsigned long long)m->disk_size);
			goto out;
		}
	} else if (!S_ISREG(st.st_mode)) {
		e = -EINVAL;
		snprintf(err, errlen, "%s: not a regular file or block device", out_path);
		goto out;
	} else if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)m->disk_size) < 0) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", out_path, strerror(-e));
		goto out;
	}
	img_progress_init(&prog, "extract", progress, m->disk_size);
	for (size_t i = 0; i < m->n_chunks; i++) {
		const struct img_chunk *c = &m->chunks[i];

		e = img_chunk_read(cr, i, buf, err, errlen);
		if (e < 0)
			goto out;
		if (blk && (e = write_zeros(fd, zeros, m->chunk_size, pos, c->offset)) < 0)
			goto out_write;
		e = rb_pwrite_all(fd, buf, c->length, c->offset);
		if (e < 0)
			goto out_write;
		pos = c->offset + c->length;
		img_progress_update(&prog, pos, false);
	}
	if (blk && (e = write_zeros(fd, zeros, m->chunk_size, pos, m->disk_size)) < 0)
		goto out_write;
	if (fsync(fd) < 0) {
		e = -errno;
		goto out_write;
	}
	img_progress_update(&prog, m->disk_size, true);
	e = 0;
	goto out;
out_write:
	snprintf(err, errlen, "writing %s: %s", out_path, strerror(-e));
out:
	if (fd >= 0)
		close(fd);
	if (e < 0 && created)
		unlink(out_path);
	img_chunk_reader_free(cr);
	img_manifest_free(m);
	free(buf);
	free(zeros);
	return e;
}
