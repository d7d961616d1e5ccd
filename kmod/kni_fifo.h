/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kni_fifo.h - access to the single-producer/single-consumer FIFOs shared
 * with userspace.
 *
 * The ring length is validated once at CREATE and cached in kernel
 * memory; the shared "len" field is never read again.  Every index read
 * from shared memory is masked, so a corrupted index can only select a
 * wrong slot, never one outside the ring.
 */
#ifndef KNI_FIFO_H
#define KNI_FIFO_H

#include <linux/compiler.h>
#include <linux/kernel.h>
#include <asm/barrier.h>

#include "kni_abi.h"

struct kni_ring {
	struct rte_kni_fifo *fifo;	/* kernel mapping of the shared ring */
	u32 mask;			/* cached len - 1 */
};

/* Entries available to the consumer. */
static inline u32 kni_ring_count(const struct kni_ring *r)
{
	u32 write = smp_load_acquire(&r->fifo->write);
	u32 read = READ_ONCE(r->fifo->read);

	return (write - read) & r->mask;
}

/* Slots available to the producer. */
static inline u32 kni_ring_free(const struct kni_ring *r)
{
	u32 read = smp_load_acquire(&r->fifo->read);
	u32 write = READ_ONCE(r->fifo->write);

	return (read - write - 1) & r->mask;
}

/* Producer side: returns the number of entries stored (maybe fewer). */
static inline u32 kni_ring_put(struct kni_ring *r, const u64 *entries, u32 n)
{
	struct rte_kni_fifo *f = r->fifo;
	u32 write = READ_ONCE(f->write) & r->mask;
	u32 read = smp_load_acquire(&f->read) & r->mask;
	u32 room = (read - write - 1) & r->mask;
	u32 i;

	n = min(n, room);
	for (i = 0; i < n; i++)
		WRITE_ONCE(f->buffer[(write + i) & r->mask], entries[i]);
	smp_store_release(&f->write, (write + n) & r->mask);
	return n;
}

/* Consumer side: returns the number of entries taken (maybe fewer). */
static inline u32 kni_ring_get(struct kni_ring *r, u64 *entries, u32 n)
{
	struct rte_kni_fifo *f = r->fifo;
	u32 read = READ_ONCE(f->read) & r->mask;
	u32 write = smp_load_acquire(&f->write) & r->mask;
	u32 avail = (write - read) & r->mask;
	u32 i;

	n = min(n, avail);
	for (i = 0; i < n; i++)
		entries[i] = READ_ONCE(f->buffer[(read + i) & r->mask]);
	smp_store_release(&f->read, (read + n) & r->mask);
	return n;
}

#endif /* KNI_FIFO_H */
