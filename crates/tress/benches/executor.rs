//! Criterion benches for `tress::executor` against rayon and the
//! `threadpool` crate: spawn-and-join of 100k tiny tasks on pools of the
//! same size (the machine's parallelism), created once outside the timing.
//!
//! - tress `submit`: submit every task, keep its future, then take every
//!   result in order (`into_result`): more work than the baselines, which
//!   return nothing.
//! - tress `map`: one `map` over the 100k items (chunks of 1 and of 256),
//!   every result taken in order.
//! - rayon: `scope` with one `spawn` per task.
//! - threadpool: one `execute` per task, then `join`.
//!
//! Criterion's time per element is the time per task. All run in the same
//! group, interleaved in one run (PERF-NOTES lesson 9).
//!
//! ```text
//! cargo bench -p tress --bench executor        # ~30 seconds
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

/// Tasks per iteration.
const TASKS: u64 = 100_000;

fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn spawn_join(c: &mut Criterion) {
    let n = workers();
    let mut g = c.benchmark_group(format!("spawn_join_100k_{n}w"));
    g.throughput(Throughput::Elements(TASKS));
    g.sampling_mode(SamplingMode::Flat);

    let tress_pool = tress::executor::Executor::with_workers(n);
    g.bench_function("tress submit+into_result", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..TASKS)
                .map(|i| tress_pool.submit(move || black_box(i)).unwrap())
                .collect();
            let mut sum = 0;
            for f in futs {
                sum += f.into_result().unwrap();
            }
            assert_eq!(sum, TASKS * (TASKS - 1) / 2);
        });
    });
    for chunk in [1, 256] {
        g.bench_function(format!("tress map chunk={chunk}"), |b| {
            b.iter(|| {
                let sum: u64 = tress_pool
                    .map(0..TASKS, black_box, chunk)
                    .unwrap()
                    .map(Result::unwrap)
                    .sum();
                assert_eq!(sum, TASKS * (TASKS - 1) / 2);
            });
        });
    }

    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap();
    g.bench_function("rayon scope+spawn", |b| {
        b.iter(|| {
            rayon_pool.scope(|s| {
                for i in 0..TASKS {
                    s.spawn(move |_| {
                        black_box(i);
                    });
                }
            });
        });
    });

    let tp = threadpool::ThreadPool::new(n);
    g.bench_function("threadpool execute+join", |b| {
        b.iter(|| {
            for i in 0..TASKS {
                tp.execute(move || {
                    black_box(i);
                });
            }
            tp.join();
        });
    });
    g.finish();
    tress_pool.shutdown(true, false);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = spawn_join
}
criterion_main!(benches);
