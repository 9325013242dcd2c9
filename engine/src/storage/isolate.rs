//! Batches written so that one bad row cannot fail the others ([`write_isolating`]).

use super::error::{StorageError, StorageResult};

/// What became of one row of a batch written by [`write_isolating`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// Stored.
    Stored,
    /// Refused by storage for itself (the text says why); writing it again would fail again.
    Refused(String),
    /// Not stored because the database failed (or the writer was fenced off by a newer owner); it
    /// may be written again later.
    Failed,
}

/// The outcome of [`write_isolating`], row by row, in the batch's order.
#[derive(Debug)]
pub struct BatchOutcome {
    /// One outcome per row of the batch.
    pub rows: Vec<RowOutcome>,
    /// The database failure that left rows `Failed`, if any.
    pub failure: Option<StorageError>,
}

impl BatchOutcome {
    /// Indexes of the refused rows with their reasons.
    pub fn refused(&self) -> impl Iterator<Item = (usize, &str)> {
        self.rows.iter().enumerate().filter_map(|(i, r)| match r {
            RowOutcome::Refused(why) => Some((i, why.as_str())),
            _ => None,
        })
    }
}

/// Writes a batch so that one bad row cannot fail the others: the whole batch first (the only
/// write when nothing is wrong, so the hot path pays nothing), and when storage refuses it for
/// its rows ([`StorageError::is_row_fault`]), each half again, down to the single rows at fault,
/// which are reported `Refused`. A database failure (or a fenced-off write) stops the search: the
/// rows not yet stored are reported `Failed` and the error is returned with them, so the caller
/// keeps its fail-closed or retry behaviour for those. With `k` bad rows in `n` the cost is about `2k·log2(n)` writes.
///
/// `write` gets the range of rows to write and must write them atomically (all or none).
pub async fn write_isolating<F, Fut>(len: usize, mut write: F) -> BatchOutcome
where
    F: FnMut(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = StorageResult<()>>,
{
    let mut outcome = BatchOutcome {
        rows: vec![RowOutcome::Failed; len],
        failure: None,
    };
    // Ranges still to write, as a stack (first half on top, so rows keep their order).
    let mut todo = Vec::with_capacity(8);
    todo.push(0..len);
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match write(range.clone()).await {
            Ok(()) => outcome.rows[range].fill(RowOutcome::Stored),
            Err(err) if err.is_row_fault() && range.len() == 1 => {
                outcome.rows[range.start] = RowOutcome::Refused(err.to_string());
            }
            Err(err) if err.is_row_fault() => {
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Err(err) => {
                outcome.failure = Some(err);
                break;
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Runs a future whose awaits are all ready (the fake writes below never wait).
    fn run<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("the fake write never waits"),
        }
    }

    /// A fake table: a batch containing a `bad` row is refused as a whole; `down` fails every
    /// write after the first `down` ones.
    fn isolate(rows: &[&str], down_after: usize) -> (BatchOutcome, Vec<String>, usize) {
        let stored = RefCell::new(Vec::new());
        let writes = RefCell::new(0);
        let outcome = run(write_isolating(rows.len(), |range| {
            let batch = &rows[range];
            *writes.borrow_mut() += 1;
            let result = if *writes.borrow() > down_after {
                Err(StorageError::Unavailable("down".into()))
            } else if batch.iter().any(|r| r.contains('\0')) {
                Err(StorageError::Invalid("NUL".to_owned()))
            } else {
                stored
                    .borrow_mut()
                    .extend(batch.iter().map(|r| (*r).to_owned()));
                Ok(())
            };
            std::future::ready(result)
        }));
        (outcome, stored.into_inner(), writes.into_inner())
    }

    proptest::proptest! {
        /// Whatever rows are bad and wherever they sit, every good row is stored exactly once,
        /// every bad row is refused, and nothing else is; with the database failing part way,
        /// no row is refused that is good, none is stored that is bad, and the rest are `Failed`.
        #[test]
        fn any_batch_stores_every_good_row_and_refuses_only_bad_ones(
            bad in proptest::collection::vec(proptest::bool::weighted(0.1), 1..200),
            down_after in proptest::option::of(0_usize..400),
        ) {
            let rows: Vec<&str> = bad.iter().map(|b| if *b { "x\0" } else { "ok" }).collect();
            let stored = RefCell::new(vec![0_u32; rows.len()]);
            let writes = RefCell::new(0_usize);
            let outcome = run(write_isolating(rows.len(), |range| {
                *writes.borrow_mut() += 1;
                let result = if down_after.is_some_and(|d| *writes.borrow() > d) {
                    Err(StorageError::Unavailable("down".into()))
                } else if rows[range.clone()].iter().any(|r| r.contains('\0')) {
                    Err(StorageError::Constraint("bad row".to_owned()))
                } else {
                    for i in range {
                        stored.borrow_mut()[i] += 1;
                    }
                    Ok(())
                };
                std::future::ready(result)
            }));
            let stored = stored.into_inner();
            for (i, row) in outcome.rows.iter().enumerate() {
                match row {
                    RowOutcome::Stored => proptest::prop_assert!(!bad[i] && stored[i] == 1),
                    RowOutcome::Refused(_) => proptest::prop_assert!(bad[i] && stored[i] == 0),
                    RowOutcome::Failed => {
                        proptest::prop_assert!(outcome.failure.is_some() && stored[i] == 0);
                    }
                }
            }
            if outcome.failure.is_none() {
                proptest::prop_assert!(outcome.rows.iter().all(|r| *r != RowOutcome::Failed));
            }
        }
    }

    #[test]
    fn a_clean_batch_is_one_write() {
        let (outcome, stored, writes) = isolate(&["a", "b", "c"], usize::MAX);
        assert_eq!(writes, 1);
        assert_eq!(stored, ["a", "b", "c"]);
        assert!(outcome.rows.iter().all(|r| *r == RowOutcome::Stored));
        assert!(outcome.failure.is_none());
    }

    #[test]
    fn refused_rows_are_set_aside_and_the_others_stored_in_order() {
        let rows = ["a", "b\0", "c", "d", "e", "f\0", "g"];
        let (outcome, stored, _) = isolate(&rows, usize::MAX);
        assert_eq!(stored, ["a", "c", "d", "e", "g"]);
        assert_eq!(
            outcome.refused().map(|(i, _)| i).collect::<Vec<_>>(),
            [1, 5]
        );
        assert!(outcome.failure.is_none());
    }

    #[test]
    fn a_database_failure_stops_the_search_and_leaves_the_rest_failed() {
        let rows = ["a", "b\0", "c", "d"];
        // Write 1 (all) is refused, write 2 (a, b) is refused, write 3 (a) stores, then down.
        let (outcome, stored, _) = isolate(&rows, 3);
        assert_eq!(stored, ["a"]);
        assert_eq!(outcome.rows[0], RowOutcome::Stored);
        assert!(outcome.rows[1..].iter().all(|r| *r == RowOutcome::Failed));
        assert!(matches!(
            outcome.failure,
            Some(StorageError::Unavailable(_))
        ));
    }
}
