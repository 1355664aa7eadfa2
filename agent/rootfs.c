/* rootfs: a rootfs tarball (tar, tar.gz, tar.xz, tar.zst from the signed
 * catalogue) onto a block device, as a new GPT disk:
 *
 *   partition 1 "esp"  EFI System, 256 MiB from 1 MiB, FAT32 (label ESP),
 *                      left empty for the boot loader a later stage installs
 *   partition 2 "root" Linux filesystem, from 257 MiB to the end of the disk,
 *                      ext4 (default) or xfs (label root), the tarball inside
 *
 * No BIOS boot partition: UEFI nodes only (the boot loader is not the
 * agent's business). A plain file is refused rather than attached to a
 * loop device behind the caller's back: attach it first with
 * `losetup --find --show --partscan FILE` and give the loop device.
 *
 * Order of work, and why:
 *  1. The tools must be in PATH, and the disk a block device, not in use
 *     (an O_EXCL open fails while a partition is mounted), large enough;
 *     it is then held with flock(LOCK_EX), which tells udev to leave it
 *     alone.
 *  2. The download starts and the tarball's first header is read before
 *     anything is written: a missing file or data that is not a tarball
 *     leaves the disk untouched.
 *  3. The first and last MiB are zeroed (the old tables), sfdisk writes the
 *     new GPT and has the kernel read it; the partitions are found in
 *     sysfs (their sizes checked, so a stale table is not used) and their
 *     nodes in /dev (or made in the private directory where /dev has none).
 *  4. The new table is read back into memory and zeroed on disk (the
 *     kernel keeps the partitions it read): until step 8 the disk holds no
 *     partition table, so an interrupted run never leaves a disk that
 *     looks installed.
 *  5. mkfs.vfat and mkfs.ext4 (or mkfs.xfs); the root is mounted nosuid,
 *     nodev, noexec on a mkdtemp() directory (0700).
 *  6. libarchive extracts into it (the process's working directory is the
 *     mount point meanwhile: libarchive resolves entries against it) with
 *     SECURE_NODOTDOT, SECURE_SYMLINKS and SECURE_NOABSOLUTEPATHS, and
 *     permissions, numeric owners (the host's user names mean nothing for
 *     the target), times, ACLs and xattrs restored. An entry libarchive
 *     refuses ("..", an absolute path, a write through a symlink, ...) fails
 *     the whole run, naming the entry: a rootfs with holes in it is worse
 *     than none. File flags (chattr) are not restored.
 *  7. The rest of the file is read; size and SHA-256 of the stored file
 *     must match the signed entry. The root is unmounted.
 *  8. Only then is the table written back: the backup GPT, fdatasync, the
 *     protective MBR and primary GPT, fsync.
 * Any failure: unmount, zero the disk's first and last MiB, have the kernel
 * drop the partitions (BLKRRPART), fail with the reason. Tools run with
 * posix_spawn (no shell), argv arrays and a minimal environment; a failing
 * tool is named with its exit status and stderr.
 *
 * Extracted bytes are not verified until the end (step 7): a tampered
 * tarball can put files in the new root (never outside: the secure flags)
 * before its hash fails, and the disk is then left without a table.
 *
 * Owns the disk fd and lock, the mount, the private directory. Never
 * writes outside the target and the mount, never leaves a mount behind,
 * never runs a shell. */
#include "agent/rootfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/blkpg.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/stream.h"
#include "common/catalog.h"
#include "common/log.h"
#include "common/util.h"

#define MIB          (1024ULL * 1024)
#define EDGE         MIB        /* zeroed at each end of the disk */
#define TAIL_MAX     (16 * MIB) /* backup GPT area kept in memory at most */
#define STDERR_KEEP  600        /* bytes of a tool's stderr kept */
#define STDERR_SHOW  240        /* ... and shown in a message */
#define DEFAULT_PATH "/usr/sbin:/usr/bin:/sbin:/bin"
#define ESP_SECTORS  ((uint64_t)AGENT_ROOTFS_ESP_MIB * 2048) /* 512-byte */
#define ROOT_START   (2048 + ESP_SECTORS) /* in 512-byte sectors, as sysfs counts */

/* ---- running tools ------------------------------------------------------------ */

/* Writes input to fd without dying of SIGPIPE if the tool has gone. */
static void write_input(int fd, const char *input)
{
	sigset_t set, old;
	struct timespec zero = { 0, 0 };
	int e;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	e = rb_write_all(fd, input, strlen(input));
	if (e == -EPIPE)
		sigtimedwait(&set, NULL, &zero);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* One line of printable text from a tool's stderr. */
static void one_line(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = '|';
		else if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = ' ';
}

int agent_tool_run(const char *const argv[], const char *input, char *err, size_t errlen)
{
	const char *path = getenv("PATH");
	char penv[1024], *envp[3];
	char buf[STDERR_KEEP * 2 + 1];
	posix_spawn_file_actions_t fa;
	int in[2] = { -1, -1 }, er[2] = { -1, -1 };
	size_t got = 0;
	pid_t pid;
	int st, e;

	snprintf(penv, sizeof(penv), "PATH=%s", path && *path ? path : DEFAULT_PATH);
	envp[0] = penv;
	envp[1] = (char *)"LC_ALL=C";
	envp[2] = NULL;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0) {
		e = -errno;
		agent_errf(err, errlen, e, "%s: pipe: %s", argv[0], strerror(-e));
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, er[1], 2);
	e = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(er[1]);
	in[0] = er[1] = -1;
	if (e != 0) {
		agent_errf(err, errlen, -e, "%s: %s%s", argv[0], strerror(e),
		           e == ENOENT ? " (not found in PATH: rootfs images need sfdisk, "
		                         "mkfs.vfat and mkfs.ext4 or mkfs.xfs)"
		                       : "");
		e = -e;
		goto out;
	}
	if (input)
		write_input(in[1], input);
	close(in[1]);
	in[1] = -1;
	for (;;) {
		ssize_t k = read(er[0], buf + got, sizeof(buf) - 1 - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
		if (got == sizeof(buf) - 1) { /* keep the end: the error is there */
			memmove(buf, buf + STDERR_KEEP, got - STDERR_KEEP);
			got -= STDERR_KEEP;
		}
	}
	buf[got] = '\0';
	one_line(buf);
	if (strlen(buf) > STDERR_SHOW) { /* the end of it: the error is there */
		size_t n = strlen(buf);

		memmove(buf + 3, buf + n - STDERR_SHOW, STDERR_SHOW + 1);
		memcpy(buf, "...", 3);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			e = -errno;
			agent_errf(err, errlen, e, "%s: waitpid: %s", argv[0], strerror(-e));
			goto out;
		}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		e = 0;
	} else if (WIFEXITED(st)) {
		e = agent_errf(err, errlen, -EIO, "%s failed (exit %d): %s", argv[0],
		               WEXITSTATUS(st), buf[0] ? buf : "(no message)");
	} else {
		e = agent_errf(err, errlen, -EIO, "%s killed by signal %d: %s", argv[0],
		               WTERMSIG(st), buf);
	}
out:
	for (int k = 0; k < 2; k++) {
		if (in[k] >= 0)
			close(in[k]);
		if (er[k] >= 0)
			close(er[k]);
	}
	return e;
}

/* ---- sysfs ---------------------------------------------------------------------- */

static int read_small(int dirfd, const char *path, char *buf, size_t len)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	ssize_t k;

	if (fd < 0)
		return -errno;
	k = read(fd, buf, len - 1);
	close(fd);
	if (k < 0)
		return -errno;
	buf[k] = '\0';
	while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == ' '))
		buf[--k] = '\0';
	return 0;
}

static int read_u64(int dirfd, const char *path, uint64_t *ret)
{
	char buf[32];
	long long v;
	int e = read_small(dirfd, path, buf, sizeof(buf));

	if (e < 0)
		return e;
	if (rb_strtonum(buf, 0, INT64_MAX, &v) < 0)
		return -EINVAL;
	*ret = (uint64_t)v;
	return 0;
}

int agent_sysfs_partition(const char *sysfs, dev_t disk, unsigned partno, struct agent_part *ret)
{
	char path[512], rel[160], buf[32];
	struct dirent *d;
	DIR *dir;
	int e = -ENOENT;

	snprintf(path, sizeof(path), "%s/dev/block/%u:%u", sysfs, major(disk), minor(disk));
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((d = readdir(dir))) {
		uint64_t n, start, len;
		char *colon;
		long long ma, mi;

		if (d->d_name[0] == '.' || strlen(d->d_name) >= sizeof(ret->name))
			continue;
		snprintf(rel, sizeof(rel), "%s/partition", d->d_name);
		if (read_u64(dirfd(dir), rel, &n) < 0 || n != partno)
			continue;
		snprintf(rel, sizeof(rel), "%s/dev", d->d_name);
		if (read_small(dirfd(dir), rel, buf, sizeof(buf)) < 0 ||
		    !(colon = strchr(buf, ':')))
			break;
		*colon = '\0';
		snprintf(rel, sizeof(rel), "%s/start", d->d_name);
		if (rb_strtonum(buf, 0, 0xfffff, &ma) < 0 ||
		    rb_strtonum(colon + 1, 0, 0xfffff, &mi) < 0 ||
		    read_u64(dirfd(dir), rel, &start) < 0)
			break;
		snprintf(rel, sizeof(rel), "%s/size", d->d_name);
		if (read_u64(dirfd(dir), rel, &len) < 0)
			break;
		snprintf(ret->name, sizeof(ret->name), "%s", d->d_name);
		ret->dev = makedev((unsigned)ma, (unsigned)mi);
		ret->start = start;
		ret->len = len;
		e = 0;
		break;
	}
	closedir(dir);
	return e;
}

/* ---- the job -------------------------------------------------------------------- */

struct rootfs {
	const struct agent_plain_opts *o;
	const char *fstype;
	int fd; /* the whole disk, flocked */
	dev_t rdev;
	uint64_t dev_size;
	unsigned lbs;      /* logical sector size */
	char tmp[64];      /* private directory (0700) */
	char mnt[80];      /* tmp/root */
	char node[2][256]; /* partition device paths */
	bool made_node[2]; /* node[k] is ours, in tmp */
	bool partitioned;  /* the disk was written */
	bool added_parts;  /* the kernel's partitions were set with BLKPG */
	bool mounted;
	int cwd; /* while extracting: where we were */
	uint8_t *head, *tail;
	size_t head_len, tail_len;
	uint64_t tail_off;
	struct agent_stream *s;
	uint64_t t0, last_progress, size;
};

static void progress(struct rootfs *r, bool final)
{
	agent_plain_progress(r->o, "rootfs", agent_stream_received(r->s), r->size, r->t0,
	                     &r->last_progress, final);
}

/* Writes len bytes of buf (NULL: zeros) at off through the disk's page
 * cache, and drops that cache afterwards: the partitions' file systems
 * are written through their own devices, whose caches are not this one,
 * so no page of the disk's may outlive the write (a later partial-page
 * write would read it back stale). */
static int disk_write(struct rootfs *r, const uint8_t *buf, size_t len, uint64_t off)
{
	static const uint8_t zeros[65536];
	int e = 0;

	for (size_t done = 0; done < len && e == 0;) {
		size_t n = buf ? len - done : RB_MIN(len - done, sizeof(zeros));

		e = rb_pwrite_all(r->fd, buf ? buf + done : zeros, n, off + done);
		done += n;
	}
	if (e == 0 && fdatasync(r->fd) < 0)
		e = -errno;
	posix_fadvise(r->fd, 0, 0, POSIX_FADV_DONTNEED);
	return e;
}

/* Zeroes the disk's first and last MiB: no MBR, no GPT, primary or backup. */
static int zero_edges(struct rootfs *r)
{
	uint64_t n = RB_MIN(EDGE, r->dev_size);
	int e = disk_write(r, NULL, (size_t)n, 0);

	return e < 0 ? e : disk_write(r, NULL, (size_t)n, r->dev_size - n);
}

/* True if name is an executable file in a directory of PATH. */
static bool in_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[4096];

	path = path && *path ? path : DEFAULT_PATH;
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n > 0 && n + strlen(name) + 2 <= sizeof(buf)) {
			snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
			if (access(buf, X_OK) == 0)
				return true;
		}
		path += n + (path[n] == ':');
	}
	return false;
}

/* The tools, checked before the disk is touched. */
static int check_tools(const struct rootfs *r, char *err, size_t errlen)
{
	const char *tools[] = { "sfdisk", "mkfs.vfat",
		                strcmp(r->fstype, "xfs") == 0 ? "mkfs.xfs" : "mkfs.ext4" };

	for (size_t i = 0; i < RB_ARRAY_SIZE(tools); i++)
		if (!in_path(tools[i]))
			return agent_errf(err, errlen, -ENOENT,
			                  "%s not found in PATH: a rootfs tarball needs sfdisk, "
			                  "mkfs.vfat and mkfs.%s",
			                  tools[i], r->fstype);
	return 0;
}

static int open_disk(struct rootfs *r, char *err, size_t errlen)
{
	const char *t = r->o->target;
	uint64_t min =
	        (1 + AGENT_ROOTFS_ESP_MIB + (strcmp(r->fstype, "xfs") == 0 ? 320 : 64) + 1) * MIB;
	struct stat st;
	int fd, ssz = 0;

	if (stat(t, &st) < 0)
		return agent_errf(err, errlen, -errno, "%s: %s", t, strerror(errno));
	if (!S_ISBLK(st.st_mode))
		return agent_errf(err, errlen, -ENOTBLK,
		                  "%s: a rootfs tarball needs a block device; for a disk image "
		                  "file attach it first (losetup --find --show --partscan FILE) "
		                  "and give the loop device",
		                  t);
	/* O_EXCL on a block device: EBUSY while it or a partition is in use */
	fd = open(t, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd < 0)
		return agent_errf(err, errlen, -errno, "%s: %s%s", t, strerror(errno),
		                  errno == EBUSY ? " (a partition of it is mounted or in use)"
		                                 : "");
	close(fd);
	r->fd = open(t, O_RDWR | O_CLOEXEC);
	if (r->fd < 0 || fstat(r->fd, &st) < 0)
		return agent_errf(err, errlen, -errno, "%s: %s", t, strerror(errno));
	r->rdev = st.st_rdev;
	if (ioctl(r->fd, BLKGETSIZE64, &r->dev_size) < 0)
		return agent_errf(err, errlen, -errno, "%s: BLKGETSIZE64: %s", t, strerror(errno));
	if (ioctl(r->fd, BLKSSZGET, &ssz) < 0 || ssz < 512 || ssz > 65536 || MIB % (unsigned)ssz)
		return agent_errf(err, errlen, -EINVAL, "%s: unusable logical sector size", t);
	r->lbs = (unsigned)ssz;
	if (r->dev_size < min)
		return agent_errf(err, errlen, -ENOSPC,
		                  "%s has %llu MiB, a rootfs disk (%d MiB ESP + %s root) needs "
		                  "%llu MiB",
		                  t, (unsigned long long)(r->dev_size / MIB), AGENT_ROOTFS_ESP_MIB,
		                  r->fstype, (unsigned long long)(min / MIB));
	if (flock(r->fd, LOCK_EX | LOCK_NB) < 0)
		return agent_errf(err, errlen, -errno, "%s: locked by another program: %s", t,
		                  strerror(errno));
	return 0;
}

/* The device node of partition k (0-based): /dev/NAME if it is there (it
 * may take a moment), else one made in the private directory. */
static int part_node(struct rootfs *r, int k, const struct agent_part *p, char *err, size_t errlen)
{
	struct stat st;

	snprintf(r->node[k], sizeof(r->node[k]), "/dev/%s", p->name);
	for (int i = 0; i < 40; i++) {
		if (stat(r->node[k], &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == p->dev)
			return 0;
		usleep(50000);
	}
	snprintf(r->node[k], sizeof(r->node[k]), "%s/%s", r->tmp, p->name);
	if (mknod(r->node[k], S_IFBLK | 0600, p->dev) < 0)
		return agent_errf(err, errlen, -errno, "mknod %s: %s", r->node[k], strerror(errno));
	r->made_node[k] = true;
	return 0;
}

/* ---- the partition table ------------------------------------------------------ */

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int agent_gpt_entry(const uint8_t *head, size_t len, unsigned lbs, unsigned idx,
                    uint64_t *ret_first, uint64_t *ret_last)
{
	const uint8_t *h = head + lbs;
	uint64_t elba, off;
	uint32_t n, esz;

	if (lbs < 512 || len < (size_t)lbs + 92 || memcmp(h, "EFI PART", 8) != 0)
		return -EINVAL;
	elba = le64(h + 72);
	n = (uint32_t)(le64(h + 80) & 0xffffffffU);
	esz = (uint32_t)(le64(h + 84) & 0xffffffffU);
	if (esz < 128 || esz > 4096 || idx >= n || elba == 0 || elba > len / lbs)
		return -EINVAL;
	off = elba * lbs + (uint64_t)idx * esz;
	if (off + 128 > len)
		return -EINVAL;
	*ret_first = le64(head + off + 32);
	*ret_last = le64(head + off + 40);
	if (*ret_first == 0 || *ret_last < *ret_first)
		return -ENOENT; /* unused entry */
	return 0;
}

/* True if the kernel has exactly partitions 1 and 2 as wanted (512-byte
 * units) and no partition 3; p gets what it has. */
static bool kernel_matches(const struct rootfs *r, const uint64_t want[2][2],
                           struct agent_part p[2])
{
	struct agent_part extra;

	for (int k = 0; k < 2; k++)
		if (agent_sysfs_partition("/sys", r->rdev, (unsigned)k + 1, &p[k]) < 0 ||
		    p[k].start != want[k][0] || p[k].len != want[k][1])
			return false;
	return agent_sysfs_partition("/sys", r->rdev, 3, &extra) == -ENOENT;
}

static int blkpg(int fd, int op, int pno, uint64_t start, uint64_t len)
{
	struct blkpg_partition part = { .start = (long long)start,
		                        .length = (long long)len,
		                        .pno = pno };
	struct blkpg_ioctl_arg arg = { .op = op, .datalen = sizeof(part), .data = &part };

	return ioctl(fd, BLKPG, &arg) < 0 ? -errno : 0;
}

/* The kernel must see the new partitions: sfdisk asked it to re-read the
 * table; where that did not work (a kernel without GPT support, a
 * device whose re-read is refused) they are set with BLKPG, as partx does. */
static int kernel_partitions(struct rootfs *r, const uint64_t want[2][2], struct agent_part p[2],
                             char *err, size_t errlen)
{
	int e;

	for (int i = 0; i < 10; i++) {
		if (kernel_matches(r, want, p))
			return 0;
		usleep(50000);
	}
	for (unsigned n = 1; n <= 128; n++) {
		struct agent_part old;

		if (agent_sysfs_partition("/sys", r->rdev, n, &old) == 0 &&
		    (e = blkpg(r->fd, BLKPG_DEL_PARTITION, (int)n, 0, 0)) < 0)
			return agent_errf(err, errlen, e,
			                  "%s: the kernel keeps its old partition %u (%s): %s",
			                  r->o->target, n, old.name, strerror(-e));
	}
	for (int k = 0; k < 2; k++)
		if ((e = blkpg(r->fd, BLKPG_ADD_PARTITION, k + 1, want[k][0] * 512,
		               want[k][1] * 512)) < 0)
			return agent_errf(err, errlen, e,
			                  "%s: adding partition %d to the kernel (BLKPG): %s%s",
			                  r->o->target, k + 1, strerror(-e),
			                  e == -EINVAL ? " (a loop device needs --partscan)" : "");
	if (!kernel_matches(r, want, p))
		return agent_errf(err, errlen, -EIO,
		                  "%s: the kernel does not show the new partitions", r->o->target);
	r->added_parts = true;
	return 0;
}

/* Step 3: the new table, and the kernel's view of it. */
static int partition(struct rootfs *r, struct agent_part p[2], char *err, size_t errlen)
{
	const char *argv[] = { "sfdisk", "--quiet", r->o->target, NULL };
	uint64_t first[2], last[2], want[2][2];
	char script[160];
	int e;

	/* in the disk's logical sectors (4096 bytes on a 4Kn disk) */
	snprintf(script, sizeof(script),
	         "label: gpt\n"
	         "start=%u, size=%llu, type=U, name=\"esp\"\n"
	         "start=%llu, type=L, name=\"root\"\n",
	         (unsigned)(MIB / r->lbs), (unsigned long long)(ESP_SECTORS * 512 / r->lbs),
	         (unsigned long long)(ROOT_START * 512 / r->lbs));
	if ((e = zero_edges(r)) < 0)
		return agent_errf(err, errlen, e, "clearing the old partition table of %s: %s",
		                  r->o->target, strerror(-e));
	r->partitioned = true;
	if ((e = agent_tool_run(argv, script, err, errlen)) < 0)
		return e;
	/* what sfdisk wrote, read back (same device, same page cache) */
	r->head_len = MIB;
	r->head = calloc(1, r->head_len);
	if (!r->head)
		return agent_errf(err, errlen, -ENOMEM, "out of memory");
	if ((e = rb_pread_all(r->fd, r->head, r->head_len, 0)) < 0)
		return agent_errf(err, errlen, e, "reading back the new table of %s: %s",
		                  r->o->target, strerror(-e));
	for (unsigned k = 0; k < 2; k++)
		if (agent_gpt_entry(r->head, r->head_len, r->lbs, k, &first[k], &last[k]) < 0)
			return agent_errf(err, errlen, -EIO,
			                  "%s: no GPT entry %u after sfdisk (sfdisk too old?)",
			                  r->o->target, k + 1);
	for (int k = 0; k < 2; k++) {
		want[k][0] = first[k] * r->lbs / 512;
		want[k][1] = (last[k] - first[k] + 1) * r->lbs / 512;
	}
	if (want[0][0] != 2048 || want[0][1] != ESP_SECTORS || want[1][0] != ROOT_START ||
	    (last[1] + 1) * r->lbs > r->dev_size || r->dev_size - (last[1] + 1) * r->lbs > TAIL_MAX)
		return agent_errf(err, errlen, -EIO,
		                  "%s: sfdisk wrote another layout than asked (root %llu..%llu)",
		                  r->o->target, (unsigned long long)first[1],
		                  (unsigned long long)last[1]);
	r->tail_off = (last[1] + 1) * r->lbs;
	r->tail_len = (size_t)(r->dev_size - r->tail_off);
	r->tail = calloc(1, r->tail_len ? r->tail_len : 1);
	if (!r->tail)
		return agent_errf(err, errlen, -ENOMEM, "out of memory");
	if ((e = rb_pread_all(r->fd, r->tail, r->tail_len, r->tail_off)) < 0)
		return agent_errf(err, errlen, e, "reading back the new table of %s: %s",
		                  r->o->target, strerror(-e));
	if ((e = kernel_partitions(r, want, p, err, errlen)) < 0)
		return e;
	for (int k = 0; k < 2; k++)
		if ((e = part_node(r, k, &p[k], err, errlen)) < 0)
			return e;
	return 0;
}

/* Step 4: the table is in memory; zeros on disk. The kernel keeps the
 * partitions it has. */
static int hide_table(struct rootfs *r, char *err, size_t errlen)
{
	int e;

	if ((e = disk_write(r, NULL, r->head_len, 0)) < 0 ||
	    (e = disk_write(r, NULL, r->tail_len, r->tail_off)) < 0)
		return agent_errf(err, errlen, e, "%s: %s", r->o->target, strerror(-e));
	return 0;
}

static int make_filesystems(struct rootfs *r, char *err, size_t errlen)
{
	const char *vfat[] = { "mkfs.vfat", "-F", "32", "-n", "ESP", r->node[0], NULL };
	const char *ext4[] = { "mkfs.ext4", "-F", "-q", "-L", "root", r->node[1], NULL };
	const char *xfs[] = { "mkfs.xfs", "-f", "-q", "-L", "root", r->node[1], NULL };
	int e;

	if ((e = agent_tool_run(vfat, NULL, err, errlen)) < 0)
		return e;
	return agent_tool_run(strcmp(r->fstype, "xfs") == 0 ? xfs : ext4, NULL, err, errlen);
}

static int mount_root(struct rootfs *r, char *err, size_t errlen)
{
	snprintf(r->mnt, sizeof(r->mnt), "%s/root", r->tmp);
	if (mkdir(r->mnt, 0700) < 0)
		return agent_errf(err, errlen, -errno, "mkdir %s: %s", r->mnt, strerror(errno));
	if (mount(r->node[1], r->mnt, r->fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return agent_errf(err, errlen, -errno, "mount %s (%s) on %s: %s", r->node[1],
		                  r->fstype, r->mnt, strerror(errno));
	r->mounted = true;
	return 0;
}

static int unmount_root(struct rootfs *r, char *err, size_t errlen)
{
	if (!r->mounted)
		return 0;
	for (int i = 0; umount2(r->mnt, 0) < 0; i++) {
		if (errno != EBUSY || i == 20) {
			int e = -errno;

			/* never leave it mounted: detach it, and fail */
			umount2(r->mnt, MNT_DETACH);
			r->mounted = false;
			return agent_errf(err, errlen, e, "unmounting %s: %s", r->mnt,
			                  strerror(-e));
		}
		usleep(100000);
	}
	r->mounted = false;
	return 0;
}

/* ---- extraction ------------------------------------------------------------------ */

static int entry_failed(struct archive *w, struct archive_entry *ent, const char *what, char *err,
                        size_t errlen)
{
	const char *p = archive_entry_pathname(ent);
	char name[200];

	rb_escape(name, sizeof(name), p ? p : "", p ? strlen(p) : 0);
	return agent_errf(err, errlen, -EPERM, "tar entry \"%s\": %s refused: %s", name, what,
	                  archive_error_string(w) ? archive_error_string(w) : "unknown error");
}

static int extract_entries(struct rootfs *r, struct archive *a, struct archive_entry *ent,
                           struct archive *w, const char *url, struct agent_plain_stats *st,
                           char *err, size_t errlen)
{
	for (;;) {
		int k = archive_write_header(w, ent);

		if (k < ARCHIVE_WARN)
			return entry_failed(w, ent, "extraction", err, errlen);
		if (k == ARCHIVE_WARN)
			log_debug("tar entry %s: %s", archive_entry_pathname(ent),
			          archive_error_string(w));
		for (;;) {
			const void *buf;
			size_t size;
			la_int64_t off;

			k = archive_read_data_block(a, &buf, &size, &off);
			if (k == ARCHIVE_EOF)
				break;
			if (k < ARCHIVE_WARN)
				return agent_plain_read_failed(r->s, a, url, "reading the tarball",
				                               err, errlen);
			if (archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN)
				return entry_failed(w, ent, "writing", err, errlen);
			st->written_bytes += size;
		}
		if (archive_write_finish_entry(w) < ARCHIVE_WARN)
			return entry_failed(w, ent, "finishing", err, errlen);
		progress(r, false);
		k = archive_read_next_header(a, &ent);
		if (k == ARCHIVE_EOF)
			return 0;
		if (k < ARCHIVE_WARN)
			return agent_plain_read_failed(r->s, a, url, "reading the tarball", err,
			                               errlen);
	}
}

static int extract(struct rootfs *r, struct archive *a, struct archive_entry *ent, const char *url,
                   struct agent_plain_stats *st, char *err, size_t errlen)
{
	const int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
	                  ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_PERM |
	                  ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_ACL |
	                  ARCHIVE_EXTRACT_XATTR;
	struct archive *w = archive_write_disk_new();
	int e;

	if (!w)
		return agent_errf(err, errlen, -ENOMEM, "out of memory");
	/* no user lookup: numeric owners from the archive, as for a chroot */
	archive_write_disk_set_options(w, flags);
	r->cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r->cwd < 0 || chdir(r->mnt) < 0) {
		e = agent_errf(err, errlen, -errno, "chdir %s: %s", r->mnt, strerror(errno));
		goto out;
	}
	e = extract_entries(r, a, ent, w, url, st, err, errlen);
	/* directory times and modes are fixed up at close: still in the mount */
	if (archive_write_close(w) != ARCHIVE_OK && e == 0)
		e = agent_errf(err, errlen, -EIO, "finishing the extraction: %s",
		               archive_error_string(w));
out:
	archive_write_free(w);
	if (r->cwd >= 0) {
		if (fchdir(r->cwd) < 0 && chdir("/") < 0)
			log_debug("chdir back: %s", strerror(errno));
		close(r->cwd);
		r->cwd = -1;
	}
	return e;
}

/* Step 8: the table back, backup first. */
static int restore_table(struct rootfs *r, char *err, size_t errlen)
{
	int e;

	posix_fadvise(r->fd, 0, 0, POSIX_FADV_DONTNEED);
	if ((e = disk_write(r, r->tail, r->tail_len, r->tail_off)) < 0 ||
	    (e = disk_write(r, r->head, r->head_len, 0)) < 0 || (fsync(r->fd) < 0 && (e = -errno)))
		return agent_errf(err, errlen, e, "writing the partition table of %s: %s",
		                  r->o->target, strerror(-e));
	/* The kernel has these partitions already: no re-read (a kernel
	 * without GPT support would drop the ones set with BLKPG). */
	return 0;
}

static void cleanup(struct rootfs *r, bool failed)
{
	char ignore[256];

	unmount_root(r, ignore, sizeof(ignore));
	if (failed && r->partitioned && r->fd >= 0) {
		if (zero_edges(r) < 0)
			log_debug("%s: clearing the table after a failure failed", r->o->target);
		/* the kernel drops the partitions: there is no table now */
		for (int n = 1; r->added_parts && n <= 2; n++)
			blkpg(r->fd, BLKPG_DEL_PARTITION, n, 0, 0);
		if (ioctl(r->fd, BLKRRPART, 0) < 0)
			log_debug("%s: BLKRRPART: %s", r->o->target, strerror(errno));
	}
	if (r->mnt[0])
		rmdir(r->mnt);
	for (int k = 0; k < 2; k++)
		if (r->made_node[k])
			unlink(r->node[k]);
	if (r->tmp[0])
		rmdir(r->tmp);
	if (r->fd >= 0)
		close(r->fd); /* drops the flock */
	free(r->head);
	free(r->tail);
}

int agent_rootfs_write(const struct agent_plain_opts *o, const struct img_cat_plain *p,
                       const struct agent_stream_opts *so, enum agent_plain_filter f,
                       struct agent_plain_stats *st, char *err, size_t errlen)
{
	struct rootfs r = { .o = o, .fd = -1, .cwd = -1, .size = p->size };
	struct agent_part parts[2];
	struct archive *a = NULL;
	struct archive_entry *ent;
	int e;

	r.fstype = o->fstype ? o->fstype : "ext4";
	if ((e = check_tools(&r, err, errlen)) < 0 || (e = open_disk(&r, err, errlen)) < 0)
		goto out;
	snprintf(r.tmp, sizeof(r.tmp), "/tmp/rackboot-rootfs.XXXXXX");
	if (!mkdtemp(r.tmp)) {
		e = agent_errf(err, errlen, -errno, "mkdtemp %s: %s", r.tmp, strerror(errno));
		r.tmp[0] = '\0';
		goto out;
	}
	if ((e = agent_stream_new(so, &r.s)) < 0) {
		agent_errf(err, errlen, e, "starting the download: %s", strerror(-e));
		goto out;
	}
	r.t0 = rb_now_usec();
	if ((e = agent_plain_open(r.s, true, f, so->url, p->kind, &a, &ent, err, errlen)) < 0 ||
	    (e = partition(&r, parts, err, errlen)) < 0 || (e = hide_table(&r, err, errlen)) < 0 ||
	    (e = make_filesystems(&r, err, errlen)) < 0 || (e = mount_root(&r, err, errlen)) < 0 ||
	    (e = extract(&r, a, ent, so->url, st, err, errlen)) < 0 ||
	    (e = agent_stream_finish(r.s, err, errlen)) < 0 ||
	    (e = unmount_root(&r, err, errlen)) < 0 || (e = restore_table(&r, err, errlen)) < 0)
		goto out;
	progress(&r, true);
out:
	if (e < 0 && o->progress && r.last_progress)
		fputc('\n', stderr);
	if (r.s)
		st->fetched_bytes += agent_stream_received(r.s);
	agent_stream_free(r.s);
	if (a)
		archive_read_free(a);
	cleanup(&r, e < 0);
	return e;
}
