/* pkgscript: package scripts (preinst, postinst) run inside the root they
 * install into.
 *
 * A forked child puts itself in its own process group, chroots into the
 * root (by fd: fchdir, chroot("."), chdir("/")) and execs /bin/sh with the
 * script's path inside the root and a fixed, small environment. The parent
 * reads the merged stdout and stderr through a non-blocking pipe, keeping
 * only the tail, and kills the whole group at the time limit. A background
 * process the script leaves behind is killed too once the script ends, and
 * is not waited for when it holds the pipe open.
 *
 * Owns the child and the pipe. Never runs a script outside the chroot,
 * never waits past the limit, never keeps more than outlen bytes. */
#include "agent/pkgscript.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

#define ENV_MAX 16

void agent_tail_append(char *out, size_t *olen, size_t cap, const char *data, size_t k)
{
	if (cap == 0)
		return;
	if (k >= cap) {
		memcpy(out, data + k - cap, cap);
		*olen = cap;
		return;
	}
	if (*olen + k > cap) {
		size_t drop = *olen + k - cap;

		memmove(out, out + drop, *olen - drop);
		*olen -= drop;
	}
	memcpy(out + *olen, data, k);
	*olen += k;
}

void agent_tail_line(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t')
			s[i] = ' ';
		else if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
	s[len] = '\0';
}

static void child(int rootfd, int wfd, const char *script, const char *arg, char *const env[])
{
	char *const argv[] = { "sh", (char *)script, (char *)arg, NULL };
	char *envp[ENV_MAX + 3] = {
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LC_ALL=C",
	};
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	size_t n = 2;

	for (size_t i = 0; env && env[i] && i < ENV_MAX; i++)
		envp[n++] = env[i];
	envp[n] = NULL;
	setpgid(0, 0);
	if (nul >= 0)
		dup2(nul, 0);
	dup2(wfd, 1);
	dup2(wfd, 2);
	if (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0) {
		dprintf(2, "chroot into the root: %s\n", strerror(errno));
		_exit(126);
	}
	execve("/bin/sh", argv, envp);
	dprintf(2, "the root has no usable /bin/sh (%s): package scripts need one\n",
	        strerror(errno));
	_exit(127);
}

/* Reads what the pipe has now into the tail; true at end of file. */
static bool drain(int fd, char *out, size_t *olen, size_t cap)
{
	char buf[4096];

	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));

		if (k == 0)
			return true;
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return false;
		agent_tail_append(out, olen, cap, buf, (size_t)k);
	}
}

int agent_chroot_sh(int rootfd, const char *script, const char *arg, char *const env[],
                    unsigned limit_s, int *ret_status, bool *ret_timed_out, char *out,
                    size_t outlen)
{
	uint64_t deadline = rb_now_usec() + (uint64_t)limit_s * 1000000;
	bool timed_out = false, eof = false, exited = false;
	int pipefd[2], status = 0;
	size_t olen = 0, cap = outlen > 0 ? outlen - 1 : 0;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid == 0)
		child(rootfd, pipefd[1], script, arg, env);
	close(pipefd[1]);
	if (pid < 0) {
		int e = -errno;

		close(pipefd[0]);
		return e;
	}
	setpgid(pid, pid);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd pf = { .fd = pipefd[0], .events = POLLIN };

		if (!exited && waitpid(pid, &status, WNOHANG) == pid)
			exited = true;
		if (exited && eof)
			break;
		if (rb_now_usec() >= deadline) {
			if (!exited) {
				timed_out = true;
				kill(-pid, SIGKILL);
				waitpid(pid, &status, 0);
			}
			break;
		}
		poll(eof ? NULL : &pf, eof ? 0 : 1, eof ? 50 : 100);
		if (!eof)
			eof = drain(pipefd[0], out, &olen, cap);
		if (exited && !eof)
			break; /* a leftover child holds the pipe: do not wait for it */
	}
	kill(-pid, SIGKILL); /* whatever the script left running in the root */
	close(pipefd[0]);
	if (outlen > 0)
		agent_tail_line(out, olen);
	*ret_status = status;
	*ret_timed_out = timed_out;
	return 0;
}
