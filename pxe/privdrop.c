/* Privilege drop. Owns nothing. Must run after every privileged resource
 * (ports < 1024, SO_BINDTODEVICE, root directory fds) is open, and must fail
 * closed: if any step fails the server does not run as root by accident. */
#include "pxe/privdrop.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int chown_tree(const char *dir, uid_t uid, gid_t gid)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *e;

	if (dfd < 0)
		return -errno;
	if (fchown(dfd, uid, gid) < 0) {
		int r = -errno;

		close(dfd);
		return r;
	}
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	/* Only the files directly in the state dir (db, wal, leases). */
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (fchownat(dfd, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
			int r = -errno;

			closedir(d);
			return r;
		}
	}
	closedir(d);
	return 0;
}

int rb_drop_privileges(const char *user, const char *state_dir)
{
	struct passwd *pw;
	uid_t ru, eu, su;
	int r;

	if (!user || !*user || geteuid() != 0)
		return 0;
	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		log_error("user \"%s\" does not exist: create it (useradd --system %s) or set "
		          "user = \"\" in the config to stay root",
		          user, user);
		return errno ? -errno : -ENOENT;
	}
	r = chown_tree(state_dir, pw->pw_uid, pw->pw_gid);
	if (r < 0) {
		log_error("cannot give %s to %s: %s", state_dir, user, strerror(-r));
		return r;
	}
	if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		r = -errno;
		log_error("cannot drop privileges to %s: %s", user, strerror(errno));
		return r;
	}
	if (getresuid(&ru, &eu, &su) < 0 || ru != pw->pw_uid || eu != pw->pw_uid ||
	    su != pw->pw_uid || (pw->pw_uid != 0 && setuid(0) == 0)) {
		log_error("privileges were not dropped to %s", user);
		return -EPERM;
	}
	log_info("running as user %s (uid %u)", user, (unsigned)pw->pw_uid);
	return 0;
}
