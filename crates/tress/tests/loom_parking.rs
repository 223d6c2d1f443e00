//! Loom model of the event loop's parking protocol (`tress::event_loop::
//! Parking`): every interleaving of one loop and two producers.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p tress --release --test
//! loom_parking` (scripts/test.sh does, in a target directory of its own).
//!
//! The poller is modelled by a counter behind a loom `Mutex` and `Condvar`
//! (the eventfd): the loop "blocks in the poller" by waiting until the
//! counter is non-zero. Each producer sends one item. The loop parks only
//! when `Parking::park` allows; if a wake-up could be lost, some
//! interleaving leaves the loop waiting with no producer left to write,
//! and loom reports the deadlock.
#![cfg(loom)]

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use tress::event_loop::Parking;

struct Model {
    parking: Parking,
    items: Mutex<Vec<usize>>,
    eventfd: Mutex<u64>,
    readable: Condvar,
}

impl Model {
    fn send(&self, item: usize) {
        self.items.lock().unwrap().push(item);
        if self.parking.published() {
            *self.eventfd.lock().unwrap() += 1;
            self.readable.notify_one();
        }
    }
}

#[test]
fn no_lost_wake_up() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let m = Arc::new(Model {
            parking: Parking::new(),
            items: Mutex::new(Vec::new()),
            eventfd: Mutex::new(0),
            readable: Condvar::new(),
        });
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let m = m.clone();
                thread::spawn(move || m.send(p))
            })
            .collect();
        let mut got = Vec::new();
        loop {
            m.parking.taking();
            got.append(&mut m.items.lock().unwrap());
            if got.len() == 2 {
                break;
            }
            if m.parking.park() {
                // blocked in the poller until the eventfd is readable
                let mut count = m.eventfd.lock().unwrap();
                while *count == 0 {
                    count = m.readable.wait(count).unwrap();
                }
                *count = 0; // drained
                drop(count);
                m.parking.unpark();
            }
        }
        got.sort();
        assert_eq!(got, [0, 1]);
        for p in producers {
            p.join().unwrap();
        }
    });
}
