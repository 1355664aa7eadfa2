/* epoll loop plus a binary min-heap of timers. Owns the epoll fd, the heap
 * and the io/timer records; never owns the watched fds. Freed io records
 * are parked on a list until the current epoll batch is dispatched, so a
 * callback that frees another io never leaves a dangling pointer behind. */
#include "common/loop.h"
#include "common/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct rb_io {
	struct rb_loop *loop;
	int fd;
	bool dead;
	rb_io_cb cb;
	void *userdata;
	struct rb_io *next_dead;
};

struct rb_timer {
	struct rb_loop *loop;
	uint64_t deadline;
	size_t idx; /* position in heap, SIZE_MAX when not armed */
	rb_timer_cb cb;
	void *userdata;
};

struct rb_loop {
	int epfd;
	volatile int quit;
	struct rb_timer **heap;
	size_t nheap, capheap;
	struct rb_io *dead;
};

int rb_loop_new(struct rb_loop **ret)
{
	struct rb_loop *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int r = -errno;

		free(l);
		return r;
	}
	*ret = l;
	return 0;
}

static void reap_dead(struct rb_loop *l)
{
	while (l->dead) {
		struct rb_io *io = l->dead;

		l->dead = io->next_dead;
		free(io);
	}
}

void rb_loop_free(struct rb_loop *l)
{
	if (!l)
		return;
	reap_dead(l);
	for (size_t i = 0; i < l->nheap; i++)
		l->heap[i]->idx = SIZE_MAX;
	free(l->heap);
	if (l->epfd >= 0)
		close(l->epfd);
	free(l);
}

void rb_loop_quit(struct rb_loop *l)
{
	l->quit = 1;
}

int rb_io_new(struct rb_loop *l, int fd, uint32_t events, rb_io_cb cb, void *userdata,
              struct rb_io **ret)
{
	struct rb_io *io = calloc(1, sizeof(*io));
	struct epoll_event ev = { .events = events };

	if (!io)
		return -ENOMEM;
	io->loop = l;
	io->fd = fd;
	io->cb = cb;
	io->userdata = userdata;
	ev.data.ptr = io;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;

		free(io);
		return r;
	}
	*ret = io;
	return 0;
}

int rb_io_set_events(struct rb_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	return epoll_ctl(io->loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

void rb_io_free(struct rb_io *io)
{
	if (!io || io->dead)
		return;
	epoll_ctl(io->loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->dead = true;
	io->next_dead = io->loop->dead;
	io->loop->dead = io;
}

/* ---- timer heap ---- */

static void heap_swap(struct rb_loop *l, size_t a, size_t b)
{
	struct rb_timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->idx = a;
	l->heap[b]->idx = b;
}

static void heap_up(struct rb_loop *l, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (l->heap[p]->deadline <= l->heap[i]->deadline)
			break;
		heap_swap(l, p, i);
		i = p;
	}
}

static void heap_down(struct rb_loop *l, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;

		if (c < l->nheap && l->heap[c]->deadline < l->heap[m]->deadline)
			m = c;
		if (c + 1 < l->nheap && l->heap[c + 1]->deadline < l->heap[m]->deadline)
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

int rb_timer_new(struct rb_loop *l, rb_timer_cb cb, void *userdata, struct rb_timer **ret)
{
	struct rb_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->loop = l;
	t->idx = SIZE_MAX;
	t->cb = cb;
	t->userdata = userdata;
	*ret = t;
	return 0;
}

void rb_timer_disarm(struct rb_timer *t)
{
	struct rb_loop *l = t->loop;
	size_t i = t->idx;

	if (i == SIZE_MAX)
		return;
	t->idx = SIZE_MAX;
	l->nheap--;
	if (i != l->nheap) {
		l->heap[i] = l->heap[l->nheap];
		l->heap[i]->idx = i;
		heap_up(l, i);
		heap_down(l, l->heap[i]->idx);
	}
}

void rb_timer_arm(struct rb_timer *t, uint64_t deadline)
{
	struct rb_loop *l = t->loop;

	rb_timer_disarm(t);
	if (l->nheap == l->capheap) {
		size_t n = l->capheap ? l->capheap * 2 : 64;
		struct rb_timer **h = realloc(l->heap, n * sizeof(*h));

		/* Out of memory: the timer stays disarmed; its owner's next
		 * packet or the client's own timeout ends the transfer. */
		if (!h)
			return;
		l->heap = h;
		l->capheap = n;
	}
	t->deadline = deadline;
	t->idx = l->nheap;
	l->heap[l->nheap++] = t;
	heap_up(l, t->idx);
}

void rb_timer_free(struct rb_timer *t)
{
	if (!t)
		return;
	rb_timer_disarm(t);
	free(t);
}

static int next_timeout_ms(struct rb_loop *l)
{
	uint64_t now, d;

	if (l->nheap == 0)
		return -1;
	now = rb_now_usec();
	d = l->heap[0]->deadline;
	if (d <= now)
		return 0;
	return (int)RB_MIN((d - now + 999) / 1000, 60000u);
}

static void run_timers(struct rb_loop *l)
{
	uint64_t now = rb_now_usec();

	while (l->nheap > 0 && l->heap[0]->deadline <= now) {
		struct rb_timer *t = l->heap[0];

		rb_timer_disarm(t);
		t->cb(t, t->userdata);
	}
}

int rb_loop_run(struct rb_loop *l)
{
	struct epoll_event evs[64];

	while (!l->quit) {
		int n = epoll_wait(l->epfd, evs, (int)RB_ARRAY_SIZE(evs), next_timeout_ms(l));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			struct rb_io *io = evs[i].data.ptr;

			if (!io->dead)
				io->cb(io, io->fd, evs[i].events, io->userdata);
		}
		reap_dead(l);
		run_timers(l);
	}
	return 0;
}
