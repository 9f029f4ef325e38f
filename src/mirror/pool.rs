//! `jobs` worker threads taking items from one queue, for fetching and
//! verifying files in parallel.

use std::sync::Mutex;

/// Runs `work` on every item with `jobs` threads (at least one); the results
/// come in the order the items finished.
pub fn run<T: Send, R: Send>(items: Vec<T>, jobs: usize, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let queue = Mutex::new(items);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    // Not `while let`: that would hold the lock while working.
                    let next = queue.lock().unwrap().pop();
                    let Some(item) = next else { break };
                    let result = work(item);
                    done.lock().unwrap().push(result);
                }
            });
        }
    });
    done.into_inner().unwrap()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_item_is_worked_once_whatever_the_number_of_workers() {
        for jobs in [0, 1, 3, 64] {
            let mut out = super::run((0..100).collect(), jobs, |i: u32| i * 2);
            out.sort();
            assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>(), "{jobs}");
        }
    }
}
