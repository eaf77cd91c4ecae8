/* netpeer: the other end of nettest on a virtual switch. Same NE2000 at 0x300, IRQ 9
 * (driver and IP host in ne2000.h), but it claims 10.0.2.2, the address nettest pings:
 * it answers ARP for 10.0.2.2 and echo requests to it, printing each answered echo's
 * sequence number; once it has answered PINGS of them it ARPs for 10.0.2.15 (nettest)
 * and pings it PINGS times, printing the replies as nettest does.
 *
 * Run with the MAC the gateway has under slirp (52:55:0a:00:02:02) and nettest's output
 * is byte-identical to its QEMU golden file. "netpeer: serving 10.0.2.2" is printed once
 * the card receives: a harness starts nettest only after that line. */
#include "cguest.h"

#define MY_IP   {10, 0, 2, 2}
#define PEER_IP {10, 0, 2, 15}    /* nettest */
#include "ne2000.h"

#define SERVE_TIMEOUT (30 * TICKS_PER_SECOND)

static volatile int served;

static void echo_answered(u16 seq)
{
    puts("netpeer: answered echo seq=");
    putdec(seq);
    endl();
    if (echoes_answered >= PINGS)
        served = 1;
}

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    puts("netpeer: NE2000 at 0x300, IRQ 9\r\n");
    set_slave_vector(NE_IRQ, isr_irq9);

    if (step_reset() && step_init()) {
        puts("netpeer: serving ");
        put_ip(my_ip);
        endl();
        if (!receive_until(&served, SERVE_TIMEOUT)) {
            puts("FAIL serve: ");
            putdec(echoes_answered);
            puts(" of ");
            putdec(PINGS);
            puts(ring_broken ? " echo requests answered, receive ring corrupt" : " echo requests answered");
            endl();
            nfail++;
        }
        ping_peer("host");
        result("irq9", irq_counts[NE_IRQ] ? 0 : "no interrupt from the card");
        endl();
        card_stop();
    }
    summary("netpeer");
    halt();
}
