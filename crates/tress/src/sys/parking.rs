//! Portable fallback: `parking_lot_core`'s parking lot, keyed by the word's
//! address. It retries on signals internally, so waits here are interrupted
//! only at slice boundaries (see [`crate::Interrupt::slice`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use parking_lot_core::{DEFAULT_PARK_TOKEN, DEFAULT_UNPARK_TOKEN, ParkResult};

use super::Wake;

pub(super) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    let key = word.as_ptr() as usize;
    // SAFETY: the validate and timed_out callbacks do not panic and do not
    // call into the parking lot; the key is the address of a live word.
    let r = unsafe {
        parking_lot_core::park(
            key,
            || word.load(Ordering::Acquire) == expected,
            || {},
            |_, _| {},
            DEFAULT_PARK_TOKEN,
            deadline,
        )
    };
    match r {
        ParkResult::TimedOut => Wake::TimedOut,
        _ => Wake::Woken,
    }
}

pub(super) fn wake(word: &AtomicU32, n: u32) {
    let key = word.as_ptr() as usize;
    let mut left = n;
    // SAFETY: the filter and callback do not panic and do not call into the
    // parking lot.
    unsafe {
        parking_lot_core::unpark_filter(
            key,
            |_| {
                if left == 0 {
                    parking_lot_core::FilterOp::Stop
                } else {
                    left -= 1;
                    parking_lot_core::FilterOp::Unpark
                }
            },
            |_| DEFAULT_UNPARK_TOKEN,
        );
    }
}

pub(super) fn current_thread_id() -> usize {
    thread_local!(static ID: u8 = const { 0 });
    ID.with(|id| id as *const u8 as usize)
}
