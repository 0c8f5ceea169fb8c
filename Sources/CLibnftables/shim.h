#include <stdbool.h>
#include <nftables/libnftables.h>
