//! Switching between threads on one core: save the callee-saved registers on the old
//! stack, swap stack pointers, restore them from the new stack.
//!
//! The System V ABI lets a function clobber every other register, so a switch that looks
//! like a function call to both threads only has to keep rbx, rbp, r12-r15 and rsp. The
//! kernel is built soft-float (no SSE state) and threads never run with interrupts on,
//! so there is nothing else to save. The same code runs in host tests (also x86-64 SysV).

use core::arch::global_asm;

global_asm!(
    r#"
    .text
    .p2align 4
    .global percore_switch_context
percore_switch_context:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, [rsi]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .p2align 4
    .global percore_thread_trampoline
percore_thread_trampoline:
    mov rdi, r13
    call r12
    ud2
"#
);

extern "C" {
    fn percore_switch_context(save: *mut usize, load: *const usize);
    fn percore_thread_trampoline();
}

/// The saved state of a thread that is not running: its stack pointer (the registers
/// are on its stack).
#[derive(Debug, Default)]
#[repr(C)]
pub struct Context {
    stack_pointer: usize,
}

impl Context {
    /// Returns a context to save into (its value is written by the first switch away).
    pub const fn empty() -> Context {
        Context { stack_pointer: 0 }
    }

    /// Returns the context of a thread that will run `entry(argument)` on the stack
    /// ending at `stack_top` when first switched to.
    ///
    /// # Safety
    /// `[stack_top - 128, stack_top)` must be writable memory of a stack nobody uses, and
    /// `entry` must never return.
    pub unsafe fn new(
        stack_top: usize,
        entry: extern "C" fn(usize) -> !,
        argument: usize,
    ) -> Context {
        // After the switch's `ret` the stack pointer is `top`, 16-byte aligned, so the
        // trampoline's `call` gives `entry` the alignment the ABI promises.
        let top = (stack_top & !15) - 16;
        let frame = top - 8 - 6 * 8;
        let words = [
            0,                                               // r15
            0,                                               // r14
            argument,                                        // r13: the argument
            entry as usize,                                  // r12: the entry point
            0,                                               // rbx
            0,                                               // rbp
            percore_thread_trampoline as *const () as usize, // return address of the switch
        ];
        for (i, word) in words.iter().enumerate() {
            // SAFETY: the frame lies in the top 72 bytes of the stack (caller's contract).
            unsafe { core::ptr::write((frame + i * 8) as *mut usize, *word) };
        }
        Context {
            stack_pointer: frame,
        }
    }
}

/// Saves the running thread's state into `save` and continues the thread of `load`.
/// Returns when some thread switches back to `save`.
///
/// # Safety
/// `load` must be the context of a thread that is not running (made by
/// [`Context::new`] or saved by a switch), whose stack is still valid; both pointers
/// must stay valid until the switch back.
pub unsafe fn switch(save: *mut Context, load: *const Context) {
    // SAFETY: `Context` is `repr(C)` with the stack pointer first; the caller vouches
    // for the target; the assembly keeps every callee-saved register.
    unsafe { percore_switch_context(save.cast(), load.cast()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec;

    static mut MAIN: Context = Context { stack_pointer: 0 };
    static mut OTHER: Context = Context { stack_pointer: 0 };
    static mut TRACE: u64 = 0;

    extern "C" fn other(argument: usize) -> ! {
        for step in 0..3u64 {
            // SAFETY: single-threaded test; the two contexts take turns.
            unsafe {
                TRACE = TRACE * 10 + argument as u64 + step;
                switch(&raw mut OTHER, &raw const MAIN);
            }
        }
        unreachable!("the test never switches back a fourth time");
    }

    #[test]
    fn threads_take_turns_and_keep_their_registers() {
        let stack = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
        let top = stack.as_ptr() as usize + stack.len();
        let mut kept = 0u64;
        // SAFETY: the stack is fresh and leaked; contexts are statics used only here.
        unsafe {
            OTHER = Context::new(top, other, 1);
            for round in 0..3u64 {
                kept += round;
                switch(&raw mut MAIN, &raw const OTHER);
            }
            assert_eq!((&raw const TRACE).read(), 123);
        }
        assert_eq!(kept, 3);
    }
}
