//! Between processes: shared-memory segments and a queue of byte messages
//! that lives in one (Linux).
//!
//! - [`Segment`]: anonymous shared memory (`memfd_create`), its pages
//!   reserved at creation, reached by other processes through its
//!   descriptor; nothing is ever created in `/dev/shm`, so nothing can be
//!   left there.
//! - [`ByteQueue`]: a multi-producer, multi-consumer queue of byte
//!   messages of any size in a ring in a segment (the large ones out of
//!   band in the same memory file, freed as they are read), with blocking and non-blocking
//!   put/get and their batches (`put_many_with`/`get_many_with`; deadlines
//!   and [`Interrupt`](crate::Interrupt)s as the thread
//!   queues), `task_done`/`join` across processes, and a design that
//!   survives participants killed with `SIGKILL` at any point (see its
//!   docs for what the others see).
//! - [`Feeder`]: a process's writer on a `ByteQueue` whose puts never
//!   wait for room in the ring (what does not fit yet is kept in the
//!   process and placed in order by a thread of its own), as
//!   multiprocessing's `Queue` and its feeder thread.
//! - [`ShmSemaphore`] (also a bounded semaphore and a lock), [`ShmRLock`]
//!   and [`ShmEvent`]: multiprocessing's synchronization primitives, each
//!   a few futex words in a 64-byte cell of an arena, a segment shared by
//!   up to 1,021 of them (one descriptor per arena, not per primitive);
//!   [`ShmCondition`] and [`ShmBarrier`] built from them with
//!   multiprocessing's and threading's algorithms (Python's bindings use
//!   multiprocessing's own classes over the native locks for those two).
//! - [`TaskTable`]: which task each worker of a process pool runs, so the
//!   parent fails exactly the task of a worker that died.
//!
//! Waiting is on futexes in the shared memory itself (`FUTEX_WAIT` without
//! `FUTEX_PRIVATE_FLAG`), so a process sleeps until another one, any one,
//! changes the word.

mod arena;
mod feeder;
mod ring;
mod segment;
mod sync;
mod task_table;

#[doc(hidden)]
pub use arena::arenas_mapped;
pub use feeder::{Fed, Feeder};
pub use ring::{ByteQueue, Message, SendError};
#[doc(hidden)]
pub use ring::{TEST_STALL_LARGE_GET, TEST_STALL_LARGE_PUT};
pub use segment::Segment;
pub use sync::{ShmBarrier, ShmBarrierError, ShmCondition, ShmEvent, ShmRLock, ShmSemaphore};
pub use task_table::TaskTable;
