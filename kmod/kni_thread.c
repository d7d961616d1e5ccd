// SPDX-License-Identifier: GPL-2.0-only
/*
 * kni_thread.c - the kernel threads that watch the shared FIFOs.
 *
 * Userspace never signals the kernel, so the rings must be polled.  Names
 * and binding follow upstream: one "kni_single" thread per netns, bound
 * to the first device's core_id if it asked for force_bind, or one
 * "kni_<ifname>" thread per device in kthread_mode=multiple.
 *
 * Unlike upstream's 1000-iteration spin between sleeps, a pass that finds
 * nothing to do puts the thread to sleep, and consecutive idle passes
 * double the sleep from min_scheduling_interval up to
 * max_scheduling_interval.  Beyond that, the longer the silence, the longer
 * the sleep (1/16 of the silence so far, at most idle_scheduling_interval,
 * 20 ms by default), so an idle thread costs about 50 short wakeups per
 * second while a frame ending a silence is delayed by at most 1/16 of it.
 * Any work resets the sleep to min_scheduling_interval.  The sleep is interruptible (no load
 * average) and hrtimer based; egress in IOVA=VA mode wakes the thread
 * early, and request waiters poll resp_q themselves.
 */
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/sched.h>

#include "kni_dev.h"

static void kni_thread_sleep(unsigned long us)
{
	ktime_t timeout = ns_to_ktime((u64)us * NSEC_PER_USEC);

	set_current_state(TASK_INTERRUPTIBLE);
	if (kthread_should_stop()) {
		__set_current_state(TASK_RUNNING);
		return;
	}
	/* Let the timer slack by a quarter to batch wakeups. */
	schedule_hrtimeout_range(&timeout, (u64)us * NSEC_PER_USEC / 4,
				 HRTIMER_MODE_REL);
}

static void kni_thread_loop(int (*pass)(void *arg), void *arg)
{
	unsigned long interval = READ_ONCE(kni_min_interval_us);
	u64 last_work = ktime_get_ns();

	while (!kthread_should_stop()) {
		unsigned long lo = READ_ONCE(kni_min_interval_us);
		unsigned long hi = READ_ONCE(kni_max_interval_us);
		unsigned long idle_us;

		if (pass(arg)) {
			interval = lo;
			last_work = ktime_get_ns();
			cond_resched();
			continue;
		}
		kni_thread_sleep(interval);
		/*
		 * Deep idle: past max_scheduling_interval the ceiling grows
		 * with the silence, so a frame that ends a silence of T waits
		 * at most T / KNI_IDLE_RAMP, and never more than
		 * idle_scheduling_interval.
		 */
		idle_us = div_u64(ktime_get_ns() - last_work,
				  NSEC_PER_USEC * KNI_IDLE_RAMP);
		hi = max(hi, min(idle_us, READ_ONCE(kni_idle_interval_us)));
		interval = clamp(interval ? 2 * interval : 1, lo, hi);
	}
}

static int kni_single_pass(void *arg)
{
	struct kni_net *knet = arg;
	struct kni_dev *kni;
	int work = 0;

	down_read(&knet->devs_lock);
	list_for_each_entry(kni, &knet->devs, list)
		work |= kni_service(kni);
	up_read(&knet->devs_lock);
	return work;
}

static int kni_device_pass(void *arg)
{
	return kni_service(arg);
}

static int kni_single_thread(void *arg)
{
	kni_thread_loop(kni_single_pass, arg);
	return 0;
}

static int kni_device_thread(void *arg)
{
	kni_thread_loop(kni_device_pass, arg);
	return 0;
}

/* Give kni a servicing thread.  Called with knet->ioctl_lock held. */
int kni_thread_attach(struct kni_net *knet, struct kni_dev *kni)
{
	struct task_struct *thread;

	if (kni_multiple_kthread) {
		thread = kthread_create(kni_device_thread, kni, "kni_%s",
					kni->name);
		if (IS_ERR(thread))
			return PTR_ERR(thread);
		if (kni->force_bind)
			kthread_bind(thread, kni->core_id);
		kni->own_thread = true;
		WRITE_ONCE(kni->thread, thread);
		wake_up_process(thread);
		return 0;
	}

	if (!knet->single_thread) {
		thread = kthread_create(kni_single_thread, knet, "kni_single");
		if (IS_ERR(thread))
			return PTR_ERR(thread);
		/* Only the first device's binding counts, as upstream. */
		if (kni->force_bind)
			kthread_bind(thread, kni->core_id);
		knet->single_thread = thread;
		wake_up_process(thread);
	}
	WRITE_ONCE(kni->thread, knet->single_thread);
	return 0;
}

/* Stop a device's own thread (multiple mode). */
void kni_thread_detach(struct kni_dev *kni)
{
	if (kni->own_thread && kni->thread)
		kthread_stop(kni->thread);
	kni->own_thread = false;
	WRITE_ONCE(kni->thread, NULL);
}

void kni_thread_stop_single(struct kni_net *knet)
{
	if (knet->single_thread) {
		kthread_stop(knet->single_thread);
		knet->single_thread = NULL;
	}
}
