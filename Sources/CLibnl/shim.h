#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/cache.h>
