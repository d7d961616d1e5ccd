// SPDX-License-Identifier: GPL-2.0-only
/*
 * kni_req.c - the request protocol: the kernel writes one
 * struct rte_kni_request into the sync area, posts sync_va on req_q and,
 * unless the request is asynchronous, waits up to 3 s for sync_va to come
 * back on resp_q with the callback's result.
 *
 * Differences from upstream, none visible on the wire: stale responses
 * left by a timed-out request are discarded before a new request is
 * posted; the waiter polls resp_q itself every max_scheduling_interval
 * (also woken by the servicing kthread), and is aborted at once when the
 * device is being removed, so releasing an interface that is up never
 * stalls.
 */
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/rtnetlink.h>
#include <linux/sched/signal.h>

#include "kni_dev.h"


static void kni_req_drain_stale(struct kni_dev *kni)
{
	u64 stale;

	while (kni_ring_get(&kni->resp_q, &stale, 1))
		netdev_dbg(kni->netdev, "discarded a late response\n");
}

static bool kni_req_answered(struct kni_dev *kni)
{
	return kni_ring_count(&kni->resp_q) || kni_dying(kni);
}

static ktime_t kni_req_poll_period(void)
{
	unsigned long us = max(READ_ONCE(kni_max_interval_us), 50UL);

	return ns_to_ktime((u64)us * NSEC_PER_USEC);
}

/* Called with req_lock held; returns 0 or a negative errno. */
static int kni_req_wait(struct kni_dev *kni)
{
	unsigned long deadline = jiffies + KNI_REQ_TIMEOUT;

	for (;;) {
		long left = (long)(deadline - jiffies);

		if (kni_ring_count(&kni->resp_q))
			return 0;
		if (kni_dying(kni))
			return -ENODEV;
		if (left <= 0 || signal_pending(current))
			return -ETIME;
		/*
		 * Userspace cannot signal us: poll resp_q at the kthread's
		 * active rate, independently of how far the kthread has backed
		 * off; teardown and the kthread wake us earlier.
		 */
		wait_event_interruptible_hrtimeout(kni->req_wq,
						   kni_req_answered(kni),
						   kni_req_poll_period());
	}
}

/*
 * Send req and return the callback's result.  rtnl_held says whether the
 * caller holds RTNL (every ndo does; the deferred rx-flags work does not).
 * A device being removed gets requests posted as asynchronous: userspace
 * still hears about them, nobody waits.
 */
int kni_request(struct kni_dev *kni, struct rte_kni_request *req,
		bool rtnl_held)
{
	struct net_device *dev = kni->netdev;
	bool drop_rtnl = rtnl_held && kni_bifurcated && !req->async;
	u64 entry;
	int ret;

	if (drop_rtnl) {
		dev_hold(dev);
		rtnl_unlock();
	}
	mutex_lock(&kni->req_lock);

	if (kni_dying(kni))
		req->async = 1;
	kni_req_drain_stale(kni);

	req->result = 0;
	memcpy(kni->sync, req, sizeof(*req));
	if (!kni_ring_put(&kni->req_q, &kni->sync_va, 1)) {
		ret = -EBUSY;
		goto out;
	}
	kni_wake_poller(kni);
	if (req->async) {
		ret = 0;
		goto out;
	}

	WRITE_ONCE(kni->req_waiting, true);
	ret = kni_req_wait(kni);
	WRITE_ONCE(kni->req_waiting, false);
	if (ret)
		goto out;

	kni_ring_get(&kni->resp_q, &entry, 1);
	if (entry != kni->sync_va) {
		ret = -ENODATA;
		goto out;
	}
	memcpy(req, kni->sync, sizeof(*req));
	ret = req->result;
	/* A positive or out-of-range result would confuse the core. */
	if (ret > 0 || ret < -MAX_ERRNO)
		ret = -EINVAL;
out:
	mutex_unlock(&kni->req_lock);
	if (drop_rtnl) {
		rtnl_lock();
		dev_put(dev);
	}
	return ret;
}

/* Called by the servicing kthread: wake a waiter whose answer arrived. */
void kni_req_poll(struct kni_dev *kni)
{
	if (READ_ONCE(kni->req_waiting) && kni_ring_count(&kni->resp_q))
		wake_up_interruptible(&kni->req_wq);
}

/* Teardown: make any waiter return now and later requests not wait. */
void kni_req_abort(struct kni_dev *kni)
{
	set_bit(KNI_DEV_DYING, &kni->flags);
	smp_mb__after_atomic();
	wake_up_interruptible_all(&kni->req_wq);
}
