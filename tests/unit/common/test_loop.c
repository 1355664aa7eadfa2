/* Event loop: timers fire in deadline order, re-arming moves them, an io
 * freed by another callback in the same batch is never called. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/loop.h"
#include "common/util.h"

#include <sys/epoll.h>
#include <unistd.h>

struct ctx {
	struct rb_loop *loop;
	int order[8];
	int n;
	int calls;
};

static struct ctx *g;

static void fire(struct rb_timer *t, void *ud)
{
	g->order[g->n++] = (int)(intptr_t)ud;
	if (g->n == 3)
		rb_loop_quit(g->loop);
}

static void test_timer_order(void **state)
{
	struct ctx c = { 0 };
	struct rb_timer *t[4];
	uint64_t now = rb_now_usec();

	g = &c;
	assert_int_equal(rb_loop_new(&c.loop), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(rb_timer_new(c.loop, fire, (void *)(intptr_t)i, &t[i]), 0);
	rb_timer_arm(t[0], now + 30000);
	rb_timer_arm(t[1], now + 10000);
	rb_timer_arm(t[2], now + 20000);
	rb_timer_arm(t[3], now + 5000);
	rb_timer_disarm(t[3]);           /* never fires */
	rb_timer_arm(t[1], now + 40000); /* moved to last */
	assert_int_equal(rb_loop_run(c.loop), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.order[0], 2);
	assert_int_equal(c.order[1], 0);
	assert_int_equal(c.order[2], 1);
	for (int i = 0; i < 4; i++)
		rb_timer_free(t[i]);
	rb_loop_free(c.loop);
}

static void on_read(struct rb_io *io, int fd, uint32_t ev, void *ud)
{
	char b[8];

	struct rb_io **other = ud;

	g->calls++;
	(void)!read(fd, b, sizeof(b));
	/* Whoever runs first frees the other: it must not be called. */
	rb_io_free(*other);
	rb_io_free(io);
	rb_loop_quit(g->loop);
}

static void test_free_other_in_batch(void **state)
{
	struct ctx c = { 0 };
	int p1[2], p2[2];
	struct rb_io *a, *b;

	g = &c;
	assert_int_equal(rb_loop_new(&c.loop), 0);
	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	assert_int_equal(write(p1[1], "x", 1), 1);
	assert_int_equal(write(p2[1], "y", 1), 1);
	assert_int_equal(rb_io_new(c.loop, p1[0], EPOLLIN, on_read, &b, &a), 0);
	assert_int_equal(rb_io_new(c.loop, p2[0], EPOLLIN, on_read, &a, &b), 0);
	assert_int_equal(rb_loop_run(c.loop), 0);
	assert_int_equal(c.calls, 1);
	rb_loop_free(c.loop);
	close(p1[0]);
	close(p1[1]);
	close(p2[0]);
	close(p2[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_free_other_in_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
