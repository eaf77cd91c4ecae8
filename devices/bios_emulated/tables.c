/* Read-only tables that real-mode callers get far pointers to. */
#include "bios.h"

/* Diskette parameter table (INT 1Eh vector, INT 13h AH=08h ES:DI) for a
 * 1.44 MB drive, the values SeaBIOS uses, plus the 3-byte extension. */
const u8 diskette_param_table[11] __attribute__((aligned(16))) = {
    0xAF,   /* specify 1: step rate 12 ms, head unload 240 ms */
    0x02,   /* specify 2: head load 4 ms, DMA */
    0x25,   /* motor shutoff: ~2 s in ticks */
    0x02,   /* 512-byte sectors */
    18,     /* sectors per track */
    0x1B,   /* gap length */
    0xFF,   /* data length */
    0x6C,   /* format gap */
    0xF6,   /* format fill byte */
    0x0F,   /* head settle 15 ms */
    0x08,   /* motor start 1 s */
};

/* INT 15h AH=C0h system configuration table. */
const u8 bios_config_table[10] = {
    8, 0,   /* bytes that follow */
    0xFC,   /* model: AT */
    0x00,   /* submodel */
    0x01,   /* BIOS revision */
    0x60,   /* features 1: second 8259, RTC */
    0x00, 0x00, 0x00, 0x00,
};
