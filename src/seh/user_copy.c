/*
 * Fault-safe copies for buffers that may be user-mode addresses (RULES.md, rule 8).
 *
 * Why a C helper with __try/__except rather than a "safe copy" kernel routine: the structured
 * exception handling path is what Windows really runs when a user buffer faults, and it is one
 * kernel-sim can exercise with bad pointers. The image carries the scope table in .pdata/.xdata;
 * kernel-sim's fault handler walks it exactly as RtlDispatchException and __C_specific_handler
 * do for this frame shape, so a bad pointer in a test takes the same route it takes on Windows.
 *
 * Shape, kept deliberately simple so that the dispatch stays exact:
 *  - the bytes are moved by a separate, never-inlined leaf (vigil_move_bytes): the fault is raised
 *    inside a *call* made in the __try body, which is the case LLVM's SEH model covers without
 *    -fasync-exceptions (a faulting load inlined into the __try body is not guaranteed to be
 *    inside the scope's address range);
 *  - the leaf uses no stack and saves no register (no prologue, no unwind data): unwinding it is
 *    "pop the return address", after which every non-volatile register is as the caller left it;
 *  - the filter is the constant EXCEPTION_EXECUTE_HANDLER and the exception code is read in the
 *    handler block (clang passes it in RAX to the __except block), so no filter funclet runs on
 *    the exception path;
 *  - byte-wise volatile accesses: no alignment faults (rule 12: try/except does not catch those),
 *    and the compiler cannot turn the loop into a call to memcpy outside the image.
 *
 * The caller (Rust, src/kernel/user_buffer.rs) checks the address range against
 * MmUserProbeAddress before calling: a kernel address is refused with a status, never touched.
 */

typedef unsigned long long vigil_size_t;
typedef long vigil_ntstatus;

__declspec(noinline) static void vigil_move_bytes(volatile unsigned char *dst,
                                                  const volatile unsigned char *src,
                                                  vigil_size_t len)
{
    for (vigil_size_t i = 0; i < len; i++) {
        dst[i] = src[i];
    }
}

__declspec(noinline) static void vigil_fill_zero(volatile unsigned char *dst, vigil_size_t len)
{
    for (vigil_size_t i = 0; i < len; i++) {
        dst[i] = 0;
    }
}

/* Copies len bytes; returns 0, or the exception code (e.g. STATUS_ACCESS_VIOLATION) on a fault. */
vigil_ntstatus vigil_seh_copy(void *dst, const void *src, vigil_size_t len)
{
    vigil_ntstatus status = 0;
    __try {
        vigil_move_bytes((volatile unsigned char *)dst, (const volatile unsigned char *)src, len);
    } __except (1) {
        status = (vigil_ntstatus)_exception_code();
    }
    return status;
}

/* Zeroes len bytes; returns 0, or the exception code on a fault. */
vigil_ntstatus vigil_seh_zero(void *dst, vigil_size_t len)
{
    vigil_ntstatus status = 0;
    __try {
        vigil_fill_zero((volatile unsigned char *)dst, len);
    } __except (1) {
        status = (vigil_ntstatus)_exception_code();
    }
    return status;
}
