/* nettest: drives an NE2000 (DP8390 core) at I/O base 0x300, IRQ 9, by port I/O, and
 * talks to the user-mode network's gateway (QEMU slirp or hv's host stack):
 * ARP for 10.0.2.2 from 10.0.2.15, then three ICMP echo requests.
 *
 * Printed are only facts a correct card and a slirp-like gateway fix: the PROM's
 * station address, the gateway's MAC, and per echo reply its sequence number and ICMP
 * length (after checking id, checksum and the echoed payload). Not printed: frame
 * lengths (padding differs), IP ids, TTLs, timings.
 *
 * It is also a peer others can ping: all along it answers ARP for 10.0.2.15 and echo
 * requests to it without printing anything, and after its summary it keeps doing so
 * until SERVE_IDLE passes with no request (netpeer, playing the gateway on a switch,
 * pings it back then). The card driver and the IP host are in ne2000.h. */
#include "cguest.h"

#define MY_IP   {10, 0, 2, 15}
#define PEER_IP {10, 0, 2, 2}     /* the gateway */
#include "ne2000.h"

#define SERVE_IDLE (2 * TICKS_PER_SECOND)
#define SERVE_LIMIT (30 * TICKS_PER_SECOND)

static void echo_answered(u16 seq) { (void)seq; }   /* silent: the output is QEMU's */

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    puts("nettest: NE2000 at 0x300, IRQ 9\r\n");
    set_slave_vector(NE_IRQ, isr_irq9);

    int up = step_reset() && step_init();
    if (up) {
        ping_peer("gateway");
        result("irq9", irq_counts[NE_IRQ] ? 0 : "no interrupt from the card");
        endl();
    }
    summary("nettest");
    if (up) {
        serve_until_idle(SERVE_IDLE, SERVE_LIMIT);
        card_stop();
    }
    halt();
}
