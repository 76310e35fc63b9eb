//! Names and CPU priority of SQLite's connection threads.
//!
//! sqlx runs every SQLite connection on a thread of its own. The writer connection's thread
//! does the usage loader's batched inserts: bursts of CPU work that nothing on the request path
//! waits for. At the default priority the kernel shares a busy CPU fairly between that thread
//! and the runtime's workers, so a burst of inserts shows up as milliseconds of added latency on
//! requests that happen to arrive during it. Running the writer thread at a lower priority
//! (a higher nice value) lets request handling take the CPU first; the writer still gets every
//! cycle the requests leave, and its share of a saturated CPU (about 10 % at nice 10) is far
//! more than the inserts need.
//!
//! Linux only (threads are found through `/proc/self/task`); elsewhere this does nothing.

/// The prefix of the writer connection's thread name (a thread's name is at most 15 bytes).
pub(crate) const WRITER_THREAD: &str = "aihub-db-w";

/// The nice value of the writer thread: 10 gives it about a tenth of the weight of a thread at
/// the default 0 when both want the CPU.
pub(crate) const WRITER_NICE: i32 = 10;

/// Names the worker thread of connection `id` of the writer pool.
pub(crate) fn writer_thread_name(id: u64) -> String {
    format!("{WRITER_THREAD}{id}")
}

/// Names the worker thread of connection `id` of the reader pool.
pub(crate) fn reader_thread_name(id: u64) -> String {
    format!("aihub-db-r{id}")
}

/// Sets every thread of this process whose name starts with `prefix` to at least `nice`
/// (threads already nicer are left alone: an operator may have set them lower still). Returns
/// how many threads were changed. Failures are logged and skipped: a thread that ended while
/// we looked, or a system that refuses, costs latency, not correctness.
#[cfg(target_os = "linux")]
pub(crate) fn lower_threads(prefix: &str, nice: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut changed = 0;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        match rustix::process::getpriority_process(Some(tid)) {
            Ok(current) if current >= nice => {}
            Ok(_) => match rustix::process::setpriority_process(Some(tid), nice) {
                Ok(()) => changed += 1,
                Err(e) => {
                    tracing::debug!(error = %e, thread = name.trim_end(), "could not lower the thread's priority")
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, thread = name.trim_end(), "could not read the thread's priority")
            }
        }
    }
    changed
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_threads(_prefix: &str, _nice: i32) -> usize {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_current_thread() -> rustix::io::Result<i32> {
        rustix::process::getpriority_process(Some(rustix::thread::gettid()))
    }

    #[test]
    fn lowers_only_the_named_threads_and_never_raises_them() {
        let (named_tx, named_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let named = std::thread::Builder::new()
            .name("aihub-prio-test".into())
            .spawn(move || {
                named_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                nice_of_current_thread().unwrap()
            })
            .unwrap();
        named_rx.recv().unwrap();
        let before_other = nice_of_current_thread().unwrap();

        assert_eq!(lower_threads("aihub-prio-test", 5), 1);
        // Already at 5: a second call changes nothing, and a lower target does not raise it.
        assert_eq!(lower_threads("aihub-prio-test", 5), 0);
        assert_eq!(lower_threads("aihub-prio-test", 2), 0);
        assert_eq!(lower_threads("no-such-thread-prefix", 5), 0);

        go_tx.send(()).unwrap();
        assert_eq!(named.join().unwrap(), 5);
        assert_eq!(
            nice_of_current_thread().unwrap(),
            before_other,
            "other threads keep theirs"
        );
    }

    #[test]
    fn thread_names_fit_the_kernel_limit() {
        // Linux keeps 15 bytes of a thread's name; the prefix must survive with its id.
        assert!(writer_thread_name(99_999).len() <= 15);
        assert!(reader_thread_name(99_999).len() <= 15);
        assert!(writer_thread_name(7).starts_with(WRITER_THREAD));
    }
}
