//! Runs 100,000 chat messages through a stream's rules with one moderation setup, for counting
//! instructions with `valgrind --tool=callgrind` (repeatable on a busy machine, unlike time):
//!
//! ```sh
//! cargo build --release -p liveshop-benches --example chat_rules_count
//! for setup in none 1000_words 1000_words_slow_mode; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/chat_rules_count $setup 2>&1 | grep Collected
//! done
//! ```
//!
//! The count includes building the book (and compiling the words, once); run with `0` messages
//! (`chat_rules_count SETUP 0`) to count that part alone.

use liveshop_benches::chat_rules::{Setup, run_messages};

fn main() {
    let mut args = std::env::args().skip(1);
    let setup = match args.next().as_deref() {
        Some("none") | None => Setup::None,
        Some("1000_words") => Setup::Words,
        Some("1000_words_slow_mode") => Setup::WordsAndSlowMode,
        Some(other) => {
            eprintln!("unknown setup {other}: none, 1000_words or 1000_words_slow_mode");
            std::process::exit(2);
        }
    };
    let messages = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let accepted = run_messages(setup, messages);
    println!("{accepted} messages accepted");
}
