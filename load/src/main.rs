//! `liveshop-load`: a real client of the Liveshop contract v1 that measures HTTP throughput,
//! WebSocket fan-out latency, soak stability, reconnect storms and drop rushes, and gates on
//! SLOs.
//!
//! Exit codes: 0 success, 1 the run could not be done (bad flags, server unreachable, setup
//! refused), 2 an `--slo` objective was breached, 3 a correctness invariant was broken
//! (`drop`: oversell, lost reservation, wrong answer); 3 wins over 2.

/// The tool's own CPU is part of what it measures on a shared machine (`client_cpu_s`): with
/// tens of thousands of connections, glibc's allocator (arena locks, chunk consolidation) was a
/// tenth of its time in a drop rush; mimalloc, as in the engine, costs less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod auth;
mod backoff;
mod claims;
mod cli;
mod client;
mod crowd;
mod drop_events;
mod duration;
mod latency;
mod limits;
mod payload;
mod procstat;
mod progress;
mod publisher;
mod report;
mod scenarios;
mod setup;
mod slo;
mod tracker;
mod viewer;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Keep exit code 2 for SLO breaches: usage errors exit 1.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let objectives = match cli.common.slo.as_deref().map(slo::parse).transpose() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = limits::raise_nofile() {
        eprintln!("warning: could not raise the open-files limit: {e}");
    }
    payload::now_us();
    let mut builder = match cli.common.threads.map(|threads| threads.max(1)) {
        // One thread: the current-thread scheduler runs every task on this thread, with no
        // work-stealing queues and no wake-ups from one thread to another.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = threads {
                builder.worker_threads(threads);
            }
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(scenarios::run(&cli));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let mut report = match outcome {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let passed = objectives
        .as_deref()
        .is_none_or(|objectives| report.apply_slo(objectives));
    if cli.common.json {
        eprint!("{}", report.human());
        println!("{}", report.to_json());
    } else {
        print!("{}", report.human());
    }
    if !report.violations.is_empty() {
        eprintln!("INVARIANT BROKEN: {}", report.violations.join("; "));
        ExitCode::from(3)
    } else if passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("SLO breached");
        ExitCode::from(2)
    }
}
