// SPDX-License-Identifier: GPL-2.0-only
/*
 * kni_net.c - the network device: ndo callbacks that turn into requests
 * to userspace, carrier control, ethtool and 64-bit statistics.
 */
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>

#include "compat.h"
#include "kni_dev.h"

static int kni_cfg_network_if(struct kni_dev *kni, bool up, bool async)
{
	struct rte_kni_request req = {
		.req_id = RTE_KNI_REQ_CFG_NETWORK_IF,
		.if_up = up,
		.async = async,
	};

	return kni_request(kni, &req, true);
}

static int kni_net_open(struct net_device *dev)
{
	struct kni_dev *kni = netdev_priv(dev);
	int ret;

	netif_start_queue(dev);
	if (kni_default_carrier)
		netif_carrier_on(dev);
	else
		netif_carrier_off(dev);

	ret = kni_cfg_network_if(kni, true, false);
	if (ret) {
		netif_stop_queue(dev);
		netif_carrier_off(dev);
	}
	return ret;
}

static int kni_net_stop(struct net_device *dev)
{
	struct kni_dev *kni = netdev_priv(dev);

	netif_stop_queue(dev);
	netif_carrier_off(dev);
	/* Asynchronous when bifurcated (upstream's deadlock workaround). */
	kni_cfg_network_if(kni, false, kni_bifurcated);
	return 0;
}

static int kni_net_change_mtu(struct net_device *dev, int new_mtu)
{
	struct kni_dev *kni = netdev_priv(dev);
	struct rte_kni_request req = {
		.req_id = RTE_KNI_REQ_CHANGE_MTU,
		.new_mtu = new_mtu,
	};
	int ret;

	ret = kni_request(kni, &req, true);
	if (!ret)
		WRITE_ONCE(dev->mtu, new_mtu);
	return ret;
}

/* Unlike upstream, the address only changes if userspace accepted it. */
static int kni_net_set_mac(struct net_device *dev, void *p)
{
	struct kni_dev *kni = netdev_priv(dev);
	struct sockaddr *addr = p;
	struct rte_kni_request req = {
		.req_id = RTE_KNI_REQ_CHANGE_MAC_ADDR,
	};
	int ret;

	if (!is_valid_ether_addr(addr->sa_data))
		return -EADDRNOTAVAIL;
	memcpy(req.mac_addr, addr->sa_data, ETH_ALEN);
	ret = kni_request(kni, &req, true);
	if (!ret)
		kni_set_mac(dev, (const u8 *)addr->sa_data);
	return ret;
}

static void kni_send_rx_flags(struct kni_dev *kni, unsigned int change,
			      bool rtnl_held)
{
	unsigned int flags = READ_ONCE(kni->netdev->flags);
	struct rte_kni_request req = {
		.req_id = RTE_KNI_REQ_UNKNOWN,
	};

	/* Same precedence as upstream: promiscuity wins the union byte. */
	if (change & IFF_ALLMULTI) {
		req.req_id = RTE_KNI_REQ_CHANGE_ALLMULTI;
		req.allmulti = !!(flags & IFF_ALLMULTI);
	}
	if (change & IFF_PROMISC) {
		req.req_id = RTE_KNI_REQ_CHANGE_PROMISC;
		req.promiscusity = !!(flags & IFF_PROMISC);
	}
	kni_request(kni, &req, rtnl_held);
}

static void kni_rx_flags_work(struct work_struct *work)
{
	struct kni_dev *kni = container_of(work, struct kni_dev, rx_flags_work);
	unsigned int change = xchg(&kni->rx_flags_pending, 0);

	if (change)
		kni_send_rx_flags(kni, change, false);
}

/*
 * The core may call this with the address-list spinlock held (promiscuity
 * forced for secondary unicast addresses); a request sleeps, so that case
 * is handed to a work item.
 */
static void kni_net_change_rx_flags(struct net_device *dev, int change)
{
	struct kni_dev *kni = netdev_priv(dev);

	if (spin_is_locked(&dev->addr_list_lock)) {
		unsigned int old, new;

		do {
			old = READ_ONCE(kni->rx_flags_pending);
			new = old | change;
		} while (cmpxchg(&kni->rx_flags_pending, old, new) != old);
		schedule_work(&kni->rx_flags_work);
		return;
	}
	kni_send_rx_flags(kni, change, true);
}

static int kni_net_set_config(struct net_device *dev, struct ifmap *map)
{
	return (dev->flags & IFF_UP) ? -EBUSY : 0;
}

static void kni_net_tx_timeout(struct net_device *dev, unsigned int txqueue)
{
	struct kni_dev *kni = netdev_priv(dev);

	atomic64_inc(&kni->tx_errors);
	netif_wake_queue(dev);
}

static int kni_net_change_carrier(struct net_device *dev, bool new_carrier)
{
	if (new_carrier)
		netif_carrier_on(dev);
	else
		netif_carrier_off(dev);
	return 0;
}

static void kni_net_get_stats64(struct net_device *dev,
				struct rtnl_link_stats64 *stats)
{
	struct kni_dev *kni = netdev_priv(dev);
	unsigned int start;

	do {
		start = u64_stats_fetch_begin(&kni->rx_syncp);
		stats->rx_packets = u64_stats_read(&kni->rx_packets);
		stats->rx_bytes = u64_stats_read(&kni->rx_bytes);
	} while (u64_stats_fetch_retry(&kni->rx_syncp, start));
	do {
		start = u64_stats_fetch_begin(&kni->tx_syncp);
		stats->tx_packets = u64_stats_read(&kni->tx_packets);
		stats->tx_bytes = u64_stats_read(&kni->tx_bytes);
	} while (u64_stats_fetch_retry(&kni->tx_syncp, start));
	stats->rx_dropped = atomic64_read(&kni->rx_dropped);
	stats->rx_errors = atomic64_read(&kni->rx_errors);
	stats->tx_dropped = atomic64_read(&kni->tx_dropped);
	stats->tx_errors = atomic64_read(&kni->tx_errors);
}

static const struct net_device_ops kni_netdev_ops = {
	.ndo_open		= kni_net_open,
	.ndo_stop		= kni_net_stop,
	.ndo_start_xmit		= kni_start_xmit,
	.ndo_change_mtu		= kni_net_change_mtu,
	.ndo_set_mac_address	= kni_net_set_mac,
	.ndo_change_rx_flags	= kni_net_change_rx_flags,
	.ndo_set_config		= kni_net_set_config,
	.ndo_tx_timeout		= kni_net_tx_timeout,
	.ndo_change_carrier	= kni_net_change_carrier,
	.ndo_get_stats64	= kni_net_get_stats64,
};

static void kni_get_drvinfo(struct net_device *dev,
			    struct ethtool_drvinfo *info)
{
	strscpy(info->driver, KNI_DRV_NAME, sizeof(info->driver));
	strscpy(info->version, KNI_DRV_VERSION, sizeof(info->version));
}

static const struct ethtool_ops kni_ethtool_ops = {
	.get_drvinfo	= kni_get_drvinfo,
	.get_link	= ethtool_op_get_link,
};

/* alloc_netdev() setup callback. */
void kni_netdev_setup(struct net_device *dev)
{
	ether_setup(dev);
	dev->netdev_ops = &kni_netdev_ops;
	dev->ethtool_ops = &kni_ethtool_ops;
	dev->watchdog_timeo = 5;
	/* Devices live and die with the /dev/kni opener's netns. */
	kni_set_netns_local(dev);
}

void kni_netdev_init_priv(struct kni_dev *kni)
{
	INIT_LIST_HEAD(&kni->list);
	mutex_init(&kni->req_lock);
	init_waitqueue_head(&kni->req_wq);
	INIT_WORK(&kni->rx_flags_work, kni_rx_flags_work);
	skb_queue_head_init(&kni->tx_backlog);
	u64_stats_init(&kni->rx_syncp);
	u64_stats_init(&kni->tx_syncp);
}
