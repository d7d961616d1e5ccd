// SPDX-License-Identifier: GPL-2.0-only
/*
 * kni_rxtx.c - the data path.
 *
 * Ingress (rx_q -> stack): when addresses translate in any context
 * (IOVA=PA or strict), a per-device NAPI instance consumes rx_q and feeds
 * GRO; the kthread only schedules it when rx_q is non-empty.  NAPI keeps
 * being polled while frames remain, under the softirq budget, so a busy
 * stack slows consumption and frames wait in rx_q instead of being
 * dropped in a backlog.  In IOVA=VA non-strict mode translation needs
 * the owner's mm locked, so the kthread consumes rx_q itself and delivers
 * each batch synchronously with netif_receive_skb(): again the stack sets
 * the pace.
 *
 * Egress (stack -> alloc_q/tx_q): directly from ndo_start_xmit, or via a
 * short backlog drained by the kthread in IOVA=VA non-strict mode.
 *
 * Every mbuf is read into a local copy before use, every length and
 * segment count is bounded, malformed entries are dropped and counted.
 * Ownership of the FIFO ends: rx_q/free_q belong to the rx side (NAPI or
 * kthread), alloc_q/tx_q to the tx side (ndo_start_xmit under the tx lock,
 * or the kthread); loopback modes take the tx lock when they run in NAPI.
 */
#include <linux/etherdevice.h>
#include <linux/netdevice.h>
#include <linux/sched.h>
#include <linux/skbuff.h>

#include "compat.h"
#include "kni_dev.h"

/* pkt_len and data_len are adjacent in the mbuf: written in one go. */
struct kni_mbuf_lens {
	u32 pkt_len;
	u16 data_len;
} __packed;

#define KNI_MBUF_LENS_OFF	offsetof(struct rte_kni_mbuf, pkt_len)
#define KNI_MBUF_NEXT_OFF	offsetof(struct rte_kni_mbuf, next)

/*
 * How much of an mbuf is read: the first cache line (all but next, which
 * only chains need) or, to fill an egress mbuf, its addresses and data_off.
 * Copies cost per byte, and an mbuf header is larger than a small frame.
 */
#define KNI_MBUF_HEAD_LEN	KNI_MBUF_NEXT_OFF
#define KNI_MBUF_ADDR_LEN	(offsetof(struct rte_kni_mbuf, data_off) + sizeof(u16))

static_assert(offsetof(struct rte_kni_mbuf, data_len) ==
	      KNI_MBUF_LENS_OFF + offsetof(struct kni_mbuf_lens, data_len));

/* User VA of an mbuf given in PA form (equal to it when IOVA is VA). */
static u64 kni_mbuf_uva(u64 iova, const struct rte_kni_mbuf *m)
{
	return iova + (m->buf_addr - m->buf_iova);
}

static void kni_count_rx(struct kni_dev *kni, unsigned int len)
{
	u64_stats_update_begin(&kni->rx_syncp);
	u64_stats_inc(&kni->rx_packets);
	u64_stats_add(&kni->rx_bytes, len);
	u64_stats_update_end(&kni->rx_syncp);
}

static void kni_count_tx(struct kni_dev *kni, unsigned int len)
{
	u64_stats_update_begin(&kni->tx_syncp);
	u64_stats_inc(&kni->tx_packets);
	u64_stats_add(&kni->tx_bytes, len);
	u64_stats_update_end(&kni->tx_syncp);
}

#define KNI_RX_POOL_PAGES	256

/*
 * NAPI's skbs are built on page pool fragments where the kernel has them:
 * a freed skb hands its page back to the pool, so the page allocator,
 * which zeroes every page it gives out when init_on_alloc is on (Debian's
 * default), is left out of the steady state.  Without a pool (5.10, or
 * page_pool_create() failing), napi_alloc_skb() serves.
 */
void kni_rx_pages_create(struct kni_dev *kni)
{
#ifdef KNI_USE_PAGE_POOL
	struct page_pool_params params = {
		.flags = KNI_PP_FLAGS,
		.order = 0,
		.pool_size = KNI_RX_POOL_PAGES,
		.nid = NUMA_NO_NODE,
	};
	struct page_pool *pool;

	if (!kni->atomic_xlate)
		return;	/* no NAPI: the kthread delivers with netdev skbs */
	pool = page_pool_create(&params);
	kni->rx_pages = IS_ERR(pool) ? NULL : pool;
#endif
}

/* After the NAPI is gone; pages still in sockets return to the pool later. */
void kni_rx_pages_destroy(struct kni_dev *kni)
{
#ifdef KNI_USE_PAGE_POOL
	if (kni->rx_pages)
		page_pool_destroy(kni->rx_pages);
	kni->rx_pages = NULL;
#endif
}

static struct sk_buff *kni_napi_skb(struct kni_dev *kni,
				    struct napi_struct *napi, u32 len)
{
#ifdef KNI_USE_PAGE_POOL
	unsigned int headroom = NET_SKB_PAD + NET_IP_ALIGN;
	unsigned int size = SKB_DATA_ALIGN(headroom + len) +
			    SKB_DATA_ALIGN(sizeof(struct skb_shared_info));
	struct sk_buff *skb;
	unsigned int offset;
	struct page *page;

	if (kni->rx_pages && size <= PAGE_SIZE) {
		page = page_pool_dev_alloc_frag(kni->rx_pages, &offset, size);
		if (!page)
			return NULL;
		skb = napi_build_skb(page_address(page) + offset, size);
		if (!skb) {
			page_pool_put_full_page(kni->rx_pages, page, false);
			return NULL;
		}
		skb_mark_for_recycle(skb);
		skb_reserve(skb, headroom);
		return skb;
	}
#endif
	return napi_alloc_skb(napi, len);
}

/*
 * Shortest pkt_len an rx mbuf may carry: a frame for the stack needs its
 * Ethernet header, while loopback returns whatever userspace sent, empty
 * mbufs included (DPDK's kni_autotest loops freshly allocated ones).
 */
static u32 kni_rx_min_len(void)
{
	return kni_lo_mode == KNI_LO_NONE ? ETH_HLEN : 0;
}

/*
 * Walk the chain of the rx mbuf at iova: validate it, copy its data into a
 * new skb when pskb is given, and turn every next pointer into VA form so
 * userspace can free the chain.  *uva is the head's user VA, 0 if unknown.
 * Returns 0, -ENOMEM (chain fine, no skb) or -EINVAL/-EFAULT (malformed).
 */
static int kni_rx_walk(struct kni_dev *kni, u64 iova, struct napi_struct *napi,
		       struct sk_buff **pskb, u64 *uva)
{
	struct rte_kni_mbuf m, nm;
	struct sk_buff *skb = NULL;
	unsigned int seg, nb_segs;
	u32 pkt_len, copied = 0;
	int ret = 0;

	*uva = kni->iova_mode ? iova : 0;
	if (kni_mem_read(kni, iova, &m, KNI_MBUF_HEAD_LEN))
		return -EFAULT;
	*uva = kni_mbuf_uva(iova, &m);

	pkt_len = m.pkt_len;
	nb_segs = m.nb_segs;
	if (pkt_len < kni_rx_min_len() || pkt_len > KNI_MAX_FRAME_LEN ||
	    !nb_segs || nb_segs > KNI_MAX_SEGS)
		return -EINVAL;

	if (pskb) {
		skb = napi ? kni_napi_skb(kni, napi, pkt_len)
			   : netdev_alloc_skb_ip_align(kni->netdev, pkt_len);
		if (!skb)
			ret = -ENOMEM;	/* still fix the chain below */
	}

	for (seg = 0;;) {
		u16 data_len = m.data_len;
		u64 next, next_uva;

		if (data_len > pkt_len - copied)
			goto malformed;
		if (skb && data_len &&
		    kni_mem_read(kni, m.buf_iova + m.data_off,
				 skb_put(skb, data_len), data_len))
			goto malformed;
		copied += data_len;
		if (++seg == nb_segs)
			break;

		if (kni_mem_read(kni, iova + KNI_MBUF_NEXT_OFF, &next,
				 sizeof(next)) ||
		    !next || kni_mem_read(kni, next, &nm, KNI_MBUF_HEAD_LEN))
			goto malformed;
		next_uva = kni_mbuf_uva(next, &nm);
		if (next_uva != next &&
		    kni_mem_write(kni, iova + KNI_MBUF_NEXT_OFF, &next_uva,
				  sizeof(next_uva)))
			goto malformed;
		iova = next;
		m = nm;
	}
	if (copied != pkt_len)
		goto malformed;

	if (pskb)
		*pskb = skb;
	return ret;

malformed:
	kfree_skb(skb);
	return -EINVAL;
}

/* Copy len bytes between two mbuf data buffers. */
static int kni_mem_move(struct kni_dev *kni, u64 dst, u64 src, u32 len)
{
	u8 bounce[256];

	while (len) {
		u32 chunk = min_t(u32, len, sizeof(bounce));

		if (kni_mem_read(kni, src, bounce, chunk) ||
		    kni_mem_write(kni, dst, bounce, chunk))
			return -EFAULT;
		src += chunk;
		dst += chunk;
		len -= chunk;
	}
	return 0;
}

/*
 * Fill the alloc_q mbuf at entry with len bytes, from data or else from
 * the mbuf data at src_iova, zero-pad it to min_len and post it on tx_q.
 * Caller owns the tx side and checked that tx_q has room.
 */
static int kni_tx_post(struct kni_dev *kni, u64 entry, const void *data,
		       u64 src_iova, u32 len, u32 min_len)
{
	struct kni_mbuf_lens lens;
	struct rte_kni_mbuf m;
	u32 padded = max_t(u32, len, min_len);
	u64 buf, uva;

	if (kni_mem_read(kni, entry, &m, KNI_MBUF_ADDR_LEN))
		return -EFAULT;
	buf = m.buf_iova + m.data_off;
	if (len && (data ? kni_mem_write(kni, buf, data, len)
			 : kni_mem_move(kni, buf, src_iova, len)))
		return -EFAULT;
	if (padded > len && kni_mem_zero(kni, buf + len, padded - len))
		return -EFAULT;

	lens.pkt_len = padded;
	lens.data_len = padded;
	if (kni_mem_write(kni, entry + KNI_MBUF_LENS_OFF, &lens, sizeof(lens)))
		return -EFAULT;

	uva = kni_mbuf_uva(entry, &m);
	kni_ring_put(&kni->tx_q, &uva, 1);
	kni_wake_poller(kni);
	kni_count_tx(kni, padded);
	return 0;
}

/* Egress of one skb; consumes it.  Caller owns the tx side. */
static void kni_tx_skb(struct kni_dev *kni, struct sk_buff *skb)
{
	u32 len = skb->len;
	u64 entry;

	if (max_t(u32, len, ETH_ZLEN) > kni->mbuf_size ||
	    skb_linearize(skb) || !kni_ring_free(&kni->tx_q) ||
	    !kni_ring_get(&kni->alloc_q, &entry, 1)) {
		atomic64_inc(&kni->tx_dropped);
		kfree_skb(skb);
		return;
	}
	if (kni_tx_post(kni, entry, skb->data, 0, len, ETH_ZLEN)) {
		/* The alloc_q entry was bogus; it cannot be handed back. */
		atomic64_inc(&kni->tx_errors);
		kfree_skb(skb);
		return;
	}
	consume_skb(skb);
}

/* The tx lock is needed when the tx side is not already ours. */
static void kni_tx_lock(struct kni_dev *kni)
{
	if (kni->atomic_xlate)
		__netif_tx_lock(netdev_get_tx_queue(kni->netdev, 0),
				smp_processor_id());
}

static void kni_tx_unlock(struct kni_dev *kni)
{
	if (kni->atomic_xlate)
		__netif_tx_unlock(netdev_get_tx_queue(kni->netdev, 0));
}

netdev_tx_t kni_start_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct kni_dev *kni = netdev_priv(dev);
	struct task_struct *thread;

	netif_trans_update(dev);
	if (kni->atomic_xlate) {
		kni_tx_skb(kni, skb);
		return NETDEV_TX_OK;
	}

	/* IOVA=VA non-strict: the kthread copies under the owner's mm. */
	if (skb_queue_len(&kni->tx_backlog) >= KNI_TX_BACKLOG) {
		atomic64_inc(&kni->tx_dropped);
		kfree_skb(skb);
		return NETDEV_TX_OK;
	}
	skb_queue_tail(&kni->tx_backlog, skb);
	thread = READ_ONCE(kni->thread);
	if (thread)
		wake_up_process(thread);
	return NETDEV_TX_OK;
}

/* Normal ingress: up to budget rx_q entries become skbs on out. */
static int kni_rx_normal(struct kni_dev *kni, int budget,
			 struct napi_struct *napi, struct sk_buff_head *out)
{
	/* Loopback works whether the interface is up or not (upstream). */
	bool running = netif_running(kni->netdev) ||
		       kni_lo_mode == KNI_LO_FIFO_SKB;
	u64 entries[KNI_BURST], done[KNI_BURST];
	u32 i, n, nr_done = 0;

	n = min3((u32)budget, (u32)KNI_BURST, kni_ring_free(&kni->free_q));
	n = kni_ring_get(&kni->rx_q, entries, n);
	for (i = 0; i < n; i++) {
		struct sk_buff *skb = NULL;
		u64 uva;
		int ret;

		ret = kni_rx_walk(kni, entries[i], napi,
				  running ? &skb : NULL, &uva);
		if (uva)
			done[nr_done++] = uva;
		if (ret == -ENOMEM || (!ret && !running)) {
			atomic64_inc(&kni->rx_dropped);
		} else if (ret) {
			atomic64_inc(&kni->rx_errors);
		} else {
			kni_count_rx(kni, skb->len);
			__skb_queue_tail(out, skb);
		}
	}
	kni_ring_put(&kni->free_q, done, nr_done);
	return n;
}

/*
 * lo_mode_fifo: copy the first segment of each rx_q mbuf, whatever its
 * length (empty ones too), into an alloc_q mbuf and post it on tx_q with
 * that length, without involving the stack.
 */
static int kni_rx_lo_fifo(struct kni_dev *kni, int budget)
{
	u64 rx[KNI_BURST], alloc[KNI_BURST], done[2 * KNI_BURST];
	u32 i, n, nr_alloc, nr_done = 0;
	struct rte_kni_mbuf m;

	kni_tx_lock(kni);
	n = min3((u32)budget, (u32)KNI_BURST, kni_ring_count(&kni->rx_q));
	n = min3(n, kni_ring_free(&kni->tx_q), kni_ring_free(&kni->free_q) / 2);
	nr_alloc = kni_ring_get(&kni->alloc_q, alloc, n);
	n = kni_ring_get(&kni->rx_q, rx, nr_alloc);
	for (i = 0; i < n; i++) {
		u64 uva;
		bool sent = false;

		if (!kni_mem_read(kni, rx[i], &m, KNI_MBUF_HEAD_LEN) &&
		    m.data_len <= kni->mbuf_size) {
			if (!kni_tx_post(kni, alloc[i], NULL,
					 m.buf_iova + m.data_off, m.data_len,
					 0)) {
				kni_count_rx(kni, m.data_len);
				sent = true;
			}
		}
		if (kni_rx_walk(kni, rx[i], NULL, NULL, &uva) || !sent)
			atomic64_inc(&kni->rx_errors);
		if (uva)
			done[nr_done++] = uva;
		/* An unused alloc mbuf goes back to userspace via free_q. */
		if (!sent && !kni_mem_read(kni, alloc[i], &m, KNI_MBUF_ADDR_LEN))
			done[nr_done++] = kni_mbuf_uva(alloc[i], &m);
	}
	/* Alloc mbufs taken beyond the rx entries we got go back too. */
	for (; i < nr_alloc; i++)
		if (!kni_mem_read(kni, alloc[i], &m, KNI_MBUF_ADDR_LEN))
			done[nr_done++] = kni_mbuf_uva(alloc[i], &m);
	kni_tx_unlock(kni);
	kni_ring_put(&kni->free_q, done, nr_done);
	return n;
}

/* Hand the skbs built by kni_rx_normal to the stack (or back out). */
static void kni_rx_deliver(struct kni_dev *kni, struct sk_buff_head *skbs,
			   struct napi_struct *napi)
{
	struct sk_buff *skb;

	if (kni_lo_mode == KNI_LO_FIFO_SKB) {
		/* lo_mode_fifo_skb: the frame goes straight back out. */
		kni_tx_lock(kni);
		while ((skb = __skb_dequeue(skbs)))
			kni_tx_skb(kni, skb);
		kni_tx_unlock(kni);
		return;
	}
	while ((skb = __skb_dequeue(skbs))) {
		skb->protocol = eth_type_trans(skb, kni->netdev);
		skb->ip_summed = CHECKSUM_UNNECESSARY;
		if (napi)
			napi_gro_receive(napi, skb);
		else
			netif_receive_skb(skb);
	}
}

int kni_napi_poll(struct napi_struct *napi, int budget)
{
	struct kni_dev *kni = container_of(napi, struct kni_dev, napi);
	struct sk_buff_head skbs;
	int done = 0, n;

	__skb_queue_head_init(&skbs);
	while (done < budget) {
		if (kni_lo_mode == KNI_LO_FIFO) {
			n = kni_rx_lo_fifo(kni, budget - done);
		} else {
			n = kni_rx_normal(kni, budget - done, napi, &skbs);
			kni_rx_deliver(kni, &skbs, napi);
		}
		if (!n)
			break;
		done += n;
	}
	if (done)
		WRITE_ONCE(kni->rx_seq, kni->rx_seq + 1);
	if (done < budget)
		napi_complete_done(napi, done);
	return done;
}

/* IOVA=VA non-strict: the kthread does the data path under the mm. */
static int kni_service_va(struct kni_dev *kni)
{
	struct sk_buff_head rx_skbs, tx_skbs;
	struct sk_buff *skb;
	int work = 0;

	if (!kni_ring_count(&kni->rx_q) && skb_queue_empty(&kni->tx_backlog))
		return 0;

	__skb_queue_head_init(&rx_skbs);
	__skb_queue_head_init(&tx_skbs);
	spin_lock_bh(&kni->tx_backlog.lock);
	skb_queue_splice_init(&kni->tx_backlog, &tx_skbs);
	spin_unlock_bh(&kni->tx_backlog.lock);

	if (kni_mem_begin(kni)) {
		/* The owner's address space is gone: nothing can move. */
		while ((skb = __skb_dequeue(&tx_skbs))) {
			atomic64_inc(&kni->tx_dropped);
			kfree_skb(skb);
		}
		return 0;
	}
	if (kni_lo_mode == KNI_LO_FIFO) {
		work += kni_rx_lo_fifo(kni, 2 * KNI_BURST);
	} else {
		work += kni_rx_normal(kni, 2 * KNI_BURST, NULL, &rx_skbs);
		if (kni_lo_mode == KNI_LO_FIFO_SKB)
			kni_rx_deliver(kni, &rx_skbs, NULL);
	}
	while ((skb = __skb_dequeue(&tx_skbs))) {
		kni_tx_skb(kni, skb);
		work++;
	}
	kni_mem_end(kni);

	if (!skb_queue_empty(&rx_skbs)) {
		/* Synchronous delivery: the stack's pace is ours. */
		local_bh_disable();
		kni_rx_deliver(kni, &rx_skbs, NULL);
		local_bh_enable();
	}
	return work;
}

/*
 * One servicing pass by the kthread; returns non-zero if it moved
 * anything, which keeps the kthread from backing off.
 */
int kni_service(struct kni_dev *kni)
{
	unsigned long seq;

	kni_req_poll(kni);
	if (!kni->atomic_xlate)
		return kni_service_va(kni);
	if (!kni_ring_count(&kni->rx_q))
		return 0;
	seq = READ_ONCE(kni->rx_seq);
	/* Run the poll right here, in softirq context on local_bh_enable(). */
	local_bh_disable();
	napi_schedule(&kni->napi);
	local_bh_enable();
	return READ_ONCE(kni->rx_seq) != seq;
}

/*
 * At removal, with the data path stopped: hand what is left in rx_q and
 * alloc_q back to userspace through free_q, as user VAs with chains in VA
 * form, so the application can free them.
 */
void kni_return_leftovers(struct kni_dev *kni)
{
	struct kni_ring *rings[] = { &kni->rx_q, &kni->alloc_q };
	u64 entries[KNI_BURST];
	unsigned int r;
	u32 i, n;

	/*
	 * With IOVA=VA the PA form of an mbuf is its VA and chains are already
	 * in VA form: entries move verbatim, without touching the mbufs.
	 */
	if (kni->iova_mode) {
		for (r = 0; r < ARRAY_SIZE(rings); r++)
			while ((n = min_t(u32, KNI_BURST,
					  kni_ring_free(&kni->free_q))) &&
			       (n = kni_ring_get(rings[r], entries, n)))
				kni_ring_put(&kni->free_q, entries, n);
		return;
	}
	for (r = 0; r < ARRAY_SIZE(rings); r++) {
		for (;;) {
			n = min_t(u32, KNI_BURST, kni_ring_free(&kni->free_q));
			n = kni_ring_get(rings[r], entries, n);
			if (!n)
				break;
			for (i = 0; i < n; i++) {
				struct rte_kni_mbuf m;
				u64 uva = 0;

				if (rings[r] == &kni->rx_q)
					kni_rx_walk(kni, entries[i], NULL, NULL,
						    &uva);
				else if (!kni_mem_read(kni, entries[i], &m,
						       KNI_MBUF_ADDR_LEN))
					uva = kni_mbuf_uva(entries[i], &m);
				entries[i] = uva;
			}
			/* Entries that could not be translated are skipped. */
			for (i = 0; i < n; i++)
				if (entries[i])
					kni_ring_put(&kni->free_q, &entries[i], 1);
		}
	}
}
