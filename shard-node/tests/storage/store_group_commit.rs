//! Group commit (`Store::flush_deferred` + `DurableAt::wait`): every waiter returns once its
//! position is durable, whichever path made it durable — the group syncer, or a plain `flush`
//! with `appendfsync always` on the side (as replication links do). A waiter that missed the
//! wake-up of another path's fsync would wait for ever.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shard_node::store::{FsyncPolicy, Store};

#[test]
fn every_waiter_returns_whichever_path_made_its_position_durable() {
    const WAITERS: usize = 16;
    const ROUNDS: usize = 500;
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), FsyncPolicy::Always).unwrap();
    let store = Arc::new(Mutex::new(store));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Another writer that flushes (and fsyncs) on its own, as a replication link does.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let side = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut s = store.lock().unwrap();
                s.append(b"from a link").unwrap();
                s.flush().unwrap();
            }
        })
    };
    rt.block_on(async {
        let tasks: Vec<_> = (0..WAITERS)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for round in 0..ROUNDS {
                        let durable = {
                            let mut s = store.lock().unwrap();
                            s.append(format!("{w}:{round}").as_bytes()).unwrap();
                            s.flush_deferred().unwrap()
                        };
                        if let Some(durable) = durable {
                            tokio::time::timeout(Duration::from_secs(10), durable.wait())
                                .await
                                .unwrap_or_else(|_| {
                                    panic!("waiter {w}, round {round}: not woken in 10 s")
                                })
                                .expect("durable");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("waiter task");
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    side.join().unwrap();
    let info = store.lock().unwrap().info();
    assert_eq!(info.pending_fsync_bytes, 0, "everything written is durable");
}
