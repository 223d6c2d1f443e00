//! Work handed to a loop from other threads (`call_soon_threadsafe`).

use std::io;
use std::sync::Arc;

use super::parking::Parking;
use super::poller::Waker;
use crate::Mutex;

/// A multi-producer inbox whose producers write the loop's waker only
/// when the loop is parked in its poller (see [`Parking`]): a stream of
/// items sent to a busy loop costs no system call.
#[derive(Debug)]
pub struct Inbox<T> {
    items: Mutex<Vec<T>>,
    parking: Parking,
    waker: Waker,
}

impl<T> Inbox<T> {
    /// An empty inbox with its own waker (to register with the loop's
    /// poller: [`waker`](Self::waker)).
    pub fn new() -> io::Result<Arc<Inbox<T>>> {
        Ok(Arc::new(Inbox {
            items: Mutex::new(Vec::new()),
            parking: Parking::new(),
            waker: Waker::new()?,
        }))
    }

    /// Hands `item` to the loop, from any thread.
    pub fn send(&self, item: T) {
        self.items.lock().push(item);
        if self.parking.published() {
            self.waker.wake();
        }
    }

    /// Wakes the loop without an item (to make it look at a flag of its
    /// own, e.g. a stop request).
    pub fn nudge(&self) {
        if self.parking.published() {
            self.waker.wake();
        }
    }

    /// Loop side: moves what was sent into `out` (in the order sent by
    /// each producer).
    pub fn take(&self, out: &mut Vec<T>) {
        self.parking.taking();
        let mut items = self.items.lock();
        if out.is_empty() {
            std::mem::swap(&mut *items, out);
        } else {
            out.append(&mut items);
        }
    }

    /// Loop side: whether something was sent (or nudged) since the last
    /// [`take`](Self::take).
    pub fn is_pending(&self) -> bool {
        self.parking.is_pending()
    }

    /// Loop side, before a blocking poll: whether it may block.
    pub fn park(&self) -> bool {
        self.parking.park()
    }

    /// Loop side, once the blocking poll returned.
    pub fn unpark(&self) {
        self.parking.unpark()
    }

    /// The eventfd to register with the loop's poller (drained with
    /// [`Waker::drain`] whenever it is reported readable).
    pub fn waker(&self) -> &Waker {
        &self.waker
    }
}
