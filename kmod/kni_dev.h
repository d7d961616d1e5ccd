/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kni_dev.h - internal state of rte_kni: per-netns state, per-device
 * state and the interfaces between the source files.
 */
#ifndef KNI_DEV_H
#define KNI_DEV_H

#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/poll.h>
#include <linux/rwsem.h>
#include <linux/skbuff.h>
#include <linux/u64_stats_sync.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "kni_abi.h"
#include "kni_fifo.h"

struct page_pool;

/* Prefix every pr_*() message with the module name. */
#undef pr_fmt
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#define KNI_DRV_NAME		"kni"
#define KNI_DRV_VERSION		"1.0"

/* Entries moved per FIFO operation (DPDK's MBUF_BURST_SZ). */
#define KNI_BURST		32
/* FIFO lengths accepted at CREATE: powers of two in this range. */
#define KNI_FIFO_LEN_MIN	2
#define KNI_FIFO_LEN_MAX	65536
/* Longest mbuf chain followed on ingress; longer chains are malformed. */
#define KNI_MAX_SEGS		64
/* Largest frame accepted on ingress. */
#define KNI_MAX_FRAME_LEN	65535
/* Egress skbs queued for the kthread in IOVA=VA non-strict mode. */
#define KNI_TX_BACKLOG		256
/* Upstream's request timeout. */
#define KNI_REQ_TIMEOUT		(3 * HZ)
/* Idle kthread sleeps grow to 1/KNI_IDLE_RAMP of the silence so far. */
#define KNI_IDLE_RAMP		16
/* Largest interval accepted for the scheduling parameters (us). */
#define KNI_INTERVAL_MAX_US	1000000

enum kni_lo_mode {
	KNI_LO_NONE,
	KNI_LO_FIFO,
	KNI_LO_FIFO_SKB,
};

/* Parsed module parameters (kni_params.c). */
extern enum kni_lo_mode kni_lo_mode;
extern bool kni_multiple_kthread;
extern bool kni_default_carrier;
extern bool kni_bifurcated;
extern bool kni_strict_required;
extern bool kni_multi_open;
extern unsigned long kni_min_interval_us;
extern unsigned long kni_max_interval_us;
extern unsigned long kni_idle_interval_us;
int kni_params_parse(void);
void kni_params_loaded(void);

/* A strict-mode region: user memory pinned and mapped at REGISTER_MEM. */
struct kni_pa_extent {
	unsigned long pfn;	/* first pfn of a physically contiguous run */
	unsigned long index;	/* its page index in the region */
	unsigned long count;
};

struct kni_region {
	u64 uva;
	u64 len;
	void *kva;		/* vmap of the whole region */
	struct page **pages;
	unsigned long npages;
	struct kni_pa_extent *extents;	/* sorted by pfn */
	unsigned long nr_extents;
};

/*
 * Per network namespace state.  One /dev/kni opener, or several with
 * multi_open=on; devs holds every opener's devices (names are unique per
 * netns) and is what the single kthread serves.
 */
struct kni_net {
	unsigned int openers;		/* open files, under ioctl_lock */
	struct mutex ioctl_lock;	/* CREATE, RELEASE, REGISTER_MEM, open, close */
	struct rw_semaphore devs_lock;	/* devs, against the single kthread */
	struct list_head devs;
	struct task_struct *single_thread;
};

/*
 * One open file of /dev/kni: it owns the devices it created, its
 * strict-mode regions and its poll() readiness.
 */
struct kni_ctx {
	struct net *net;		/* netns at open (get_net) */
	struct kni_net *knet;
	unsigned int nr_devs;		/* devices of this opener, under ioctl_lock */
	struct kni_region *regions[RTE_KNI_MEM_REGIONS_MAX];
	unsigned int nr_regions;
	wait_queue_head_t poll_wq;	/* poll() on /dev/kni (extension) */
};

/*
 * A mapped shared-memory area (FIFO or sync area).  Pages are referenced
 * (IOVA=PA) or pinned (IOVA=VA) for the device's lifetime; strict-mode
 * areas borrow the region's mapping and own nothing.
 */
struct kni_area {
	void *kva;
	void *vmap_base;
	struct page **pages;
	unsigned int npages;
	bool pinned;
};

enum kni_area_id {
	KNI_AREA_TX,
	KNI_AREA_RX,
	KNI_AREA_ALLOC,
	KNI_AREA_FREE,
	KNI_AREA_REQ,
	KNI_AREA_RESP,
	KNI_AREA_SYNC,
	KNI_AREA_COUNT,
};

struct kni_dev {
	struct list_head list;		/* in kni_net.devs */
	struct net_device *netdev;
	struct kni_net *knet;
	struct kni_ctx *ctx;		/* the opener that created it */
	char name[RTE_KNI_NAMESIZE];

	/* Data path configuration, fixed at CREATE. */
	u8 iova_mode;			/* 0: PA, 1: VA */
	bool strict;			/* addresses must be in registered regions */
	bool atomic_xlate;		/* translation works in any context */
	unsigned int mbuf_size;
	u32 core_id;
	bool force_bind;
	struct mm_struct *mm;		/* IOVA=VA non-strict: owner's mm (mmgrab) */

	struct kni_ring tx_q, rx_q, alloc_q, free_q, req_q, resp_q;
	struct kni_area areas[KNI_AREA_COUNT];
	struct rte_kni_request *sync;	/* kernel mapping of the sync area */
	u64 sync_va;

	/* Ingress: NAPI when translation is atomic, the kthread otherwise. */
	struct napi_struct napi;
	struct page_pool *rx_pages;	/* NAPI's skb memory, if the kernel has page pools */
	unsigned long rx_seq;		/* bumped by every productive rx pass */
	struct task_struct *thread;	/* kthread servicing this device */
	bool own_thread;		/* multiple mode */
	struct sk_buff_head tx_backlog;	/* IOVA=VA non-strict egress */

	/* Request protocol. */
	struct mutex req_lock;		/* one request in flight */
	wait_queue_head_t req_wq;
	bool req_waiting;
	unsigned long flags;		/* KNI_DEV_* bits */
	struct work_struct rx_flags_work;
	unsigned int rx_flags_pending;	/* IFF_PROMISC/IFF_ALLMULTI changes */

	/* Statistics. */
	struct u64_stats_sync rx_syncp;
	u64_stats_t rx_packets, rx_bytes;
	struct u64_stats_sync tx_syncp;
	u64_stats_t tx_packets, tx_bytes;
	atomic64_t rx_dropped, rx_errors, tx_dropped, tx_errors;
};

#define KNI_DEV_DYING	0	/* being removed: abort and never wait */

static inline bool kni_dying(const struct kni_dev *kni)
{
	return test_bit(KNI_DEV_DYING, &kni->flags);
}

/* kni_mem.c: address translation and shared-memory access. */
int kni_region_register(struct kni_ctx *ctx, struct rte_kni_mem_region *req);
void kni_regions_release(struct kni_ctx *ctx);
int kni_area_map(struct kni_dev *kni, struct kni_area *area, u64 iova,
		 size_t len);
void kni_area_unmap(struct kni_area *area);
int kni_mem_begin(struct kni_dev *kni);
void kni_mem_end(struct kni_dev *kni);
int kni_mem_read(struct kni_dev *kni, u64 iova, void *dst, size_t len);
int kni_mem_write(struct kni_dev *kni, u64 iova, const void *src, size_t len);
int kni_mem_zero(struct kni_dev *kni, u64 iova, size_t len);

/* kni_req.c: request protocol. */
int kni_request(struct kni_dev *kni, struct rte_kni_request *req,
		bool rtnl_held);
void kni_req_abort(struct kni_dev *kni);
void kni_req_poll(struct kni_dev *kni);

/* kni_net.c: the network device. */
void kni_netdev_setup(struct net_device *dev);
void kni_netdev_init_priv(struct kni_dev *kni);

/* kni_rxtx.c: data path. */
int kni_napi_poll(struct napi_struct *napi, int budget);
void kni_rx_pages_create(struct kni_dev *kni);
void kni_rx_pages_destroy(struct kni_dev *kni);
netdev_tx_t kni_start_xmit(struct sk_buff *skb, struct net_device *dev);
int kni_service(struct kni_dev *kni);
void kni_return_leftovers(struct kni_dev *kni);

/* kni_thread.c: kernel threads. */
int kni_thread_attach(struct kni_net *knet, struct kni_dev *kni);
void kni_thread_detach(struct kni_dev *kni);
void kni_thread_stop_single(struct kni_net *knet);

/*
 * kni posted a request or egress frames: wake its /dev/kni opener if it
 * sleeps in poll().  Without a sleeper this is one barrier and a check.
 */
static inline void kni_wake_poller(struct kni_dev *kni)
{
	if (wq_has_sleeper(&kni->ctx->poll_wq))
		wake_up_interruptible_poll(&kni->ctx->poll_wq,
					   EPOLLIN | EPOLLRDNORM);
}

#endif /* KNI_DEV_H */
