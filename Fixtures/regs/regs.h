/* Constants shared by regs.c and block.S (plain hex so the assembler can read them too).
 * Distinct, with high bits set, so a swapped, truncated or sign-extended register shows up. */
#define RBX_VAL 0xb1b2b3b4b5b6b7b8
#define RBP_VAL 0xa0a1a2a3fffe0001
#define R12_VAL 0x1212121281828384
#define R13_VAL 0x8013f00dcafe1313
#define R14_VAL 0xc0de14140e0f1011
#define R15_VAL 0xfedcba9876543215
#define R8_VAL  0x0808080880000008
#define R9_VAL  0x9999000099990009
#define STK_VAL 0x5354414300000000   /* stk[i] = STK_VAL + i: pushed on the stack */
#define RZ_VAL  0x52454452a0000000   /* rz[i] = RZ_VAL + i: written in the red zone below rsp */
/* The i386 build (Fixtures/regs32): edi and ebp known, NSTK dwords pushed. */
#define EDI32_VAL 0xd1d2d3d4
#define EBP32_VAL 0xb0b1fffe
#define STK32_VAL 0x53540000
#define NSTK 4
#define NRZ 16
