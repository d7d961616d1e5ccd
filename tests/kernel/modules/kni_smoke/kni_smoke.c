// SPDX-License-Identifier: GPL-2.0-only
/*
 * Smallest possible out-of-tree module: proves that the build helper's -Werror build loads on a
 * matrix kernel and that a parameter given at insmod time reads back from /sys/module.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

static int answer = 7;
module_param(answer, int, 0444);
MODULE_PARM_DESC(answer, "A number that must read back from /sys/module/kni_smoke/parameters/answer");

static int __init kni_smoke_init(void)
{
	pr_info("kni_smoke: loaded with answer=%d\n", answer);
	return 0;
}

static void __exit kni_smoke_exit(void)
{
	pr_info("kni_smoke: unloaded\n");
}

module_init(kni_smoke_init);
module_exit(kni_smoke_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelnic.kni build-helper smoke module");
