//! The `starmap` command: parse flags, call the library, print, map errors to exit codes.
//! Exit codes: 0 success, 1 error, 2 only from `plan --detailed-exitcode` ("changes").

mod cli;

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a fleet render makes millions of small allocations
/// from two threads, and glibc spent a fifth of the render's CPU in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The soft limit of open files raised to the hard one, as Go programs (kubectl, Flux) do:
/// status collection keeps a connection open per cluster between rounds, and 10,000 clusters
/// need more than the usual soft limit of 1,024.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            // An unlimited hard limit is capped at Linux's default `nr_open` (2^20), which
            // setrlimit accepts.
            let wanted = limit.rlim_max.min(1 << 20);
            if limit.rlim_cur < wanted {
                limit.rlim_cur = wanted;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

fn main() -> ExitCode {
    // `starmap plan | head`: a closed pipe ends the program quietly, as it does `cat`,
    // instead of making println! fail.
    // SAFETY: setting a signal disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    raise_open_file_limit();
    // A bug must still come out as one readable line and exit 1, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("error: internal error (a bug in starmap, please report it): {what}{at}");
        eprintln!("{}", starmap::redact::scrub(&line));
    }));
    match std::panic::catch_unwind(cli::run) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(1),
    }
}
