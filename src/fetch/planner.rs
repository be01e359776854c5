//! The decisions of a download's attempt loop, apart from the loop that carries them out: which
//! mirror to ask next and for which bytes (one piece, or the rest of the file), which request
//! to send ahead while a piece drains, how long to back off after a failure, and when to give
//! up and with which error.
//!
//! [`Planner::next`] says what to do ([`Step`]); [`Planner::record`] takes how an attempt
//! ended. `fetch::download` does the rest: the requests (through [`super::transfer`]) and the
//! sleeping. The rules kept here:
//! - a failure that retrying may fix backs off with full jitter ([`super::retry`]), the
//!   exponent counting failures in a row without progress, bounded by the retries and the
//!   deadline; spread over mirrors, a mirror that has not failed takes the piece over at once,
//!   and the one that failed is passed over for [`super::pieces::DOWN_FOR`];
//! - an answer retrying cannot change (404, TLS, a refused redirect) moves on to the next
//!   mirror, or ends the download when none is left;
//! - a mirror that does not continue the file the pieces came from is left out, the bytes
//!   kept; when none is left, the whole file again from the node's first mirror;
//! - unverified pieces need a validator to tie mirrors together: without one, the rest comes
//!   from the mirror that served the first piece;
//! - after a copy that did not verify, [`Planner::whole_copies`]: each copy from one mirror
//!   (a change of mirror starts the file over), the mirrors whose copy did not verify never
//!   asked again; [`Done::from`] names the one mirror a copy came from;
//! - when the deadline cuts an attempt short, the error reported is what went wrong before it.
//!
//! Pure: no network, no clock of its own (every method that needs the time is given it), the
//! random source passed in; tested here with made-up outcomes.

use super::attempt::AttemptError;
use super::pieces::{self, Pool};
use super::response::{Piece, State, Validators};
use super::retry::{self, Backoff, Next, Rng};
use crate::support::deadline::Deadline;
use crate::support::exit::report;
use crate::support::log::{mib, redact_url};
use reqwest::Url;
use std::time::{Duration, Instant};

/// What the retry rules allow: the options of the download that bound its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retries after the first attempt; `None`: until the deadline.
    pub retries: Option<u32>,
    pub backoff: Backoff,
    pub deadline: Deadline,
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Ask a mirror.
    Attempt(Attempt),
    /// Wait this long, then ask for the next step (already shortened to the deadline).
    Wait(Duration),
    /// The file is complete.
    Done(Done),
    /// Give up.
    Stop(Stop),
}

/// One request to make: to which mirror, for what, and which request may go out ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The mirror's index in the download's URLs.
    pub mirror: usize,
    /// One piece of a download spread over mirrors; `None`: the file from the bytes received
    /// on ([`super::transfer`] asks for all of it, or the rest with `If-Range`).
    pub piece: Option<Piece>,
    /// The piece after this one, asked for once this one's last bytes are on the way.
    pub then: Option<NextPiece>,
    /// The bytes received and the restarts when the attempt began, to count what it added.
    have: u64,
    restarts: u32,
}

/// The request to send ahead for the piece after the current one (as long as the current one
/// succeeds; if not, the request is dropped unused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPiece {
    pub mirror: usize,
    /// Where the piece starts: where the current one ends.
    pub from: u64,
    pub piece: Piece,
    /// The first response's validators, for `If-Range` where the mirrors must agree.
    pub validators: Validators,
}

/// A complete download.
#[derive(Debug)]
pub struct Done {
    pub state: State,
    /// Requests that failed, plus the one that finished.
    pub attempts: u32,
    /// The mirror that finished (redacted).
    pub url: String,
    /// The one mirror every byte came from (its index); `None`: pieces or a resume from
    /// several, and nothing tells which of them served what does not verify.
    pub from: Option<usize>,
}

/// Why a download gave up; `url` is the mirror asked last (redacted).
#[derive(Debug)]
pub enum Stop {
    /// No mirror is left to ask.
    NoMirror,
    /// The deadline passed; `last` is what went wrong before it, when it cut an attempt short.
    Deadline {
        url: String,
        attempts: u32,
        last: AttemptError,
    },
    /// The retries are used up.
    GaveUp {
        url: String,
        attempts: u32,
        last: AttemptError,
    },
    /// An answer retrying cannot change, and no other mirror to ask.
    Refused { url: String, source: AttemptError },
}

/// The state of one download between attempts.
#[derive(Debug)]
pub struct Planner {
    /// The mirrors' URLs, redacted, for the log and the errors.
    shown: Vec<String>,
    pool: Pool,
    /// Spread and unverified: mirrors must carry the first response's validators.
    same_validators: bool,
    policy: Policy,
    rng: Rng,
    state: State,
    /// Requests that failed; the next piece of a spread download is not a new attempt.
    failed: u32,
    /// Failures in a row without progress: the backoff's exponent.
    failures: u32,
    /// What went wrong before the attempt the deadline cut short: the more useful cause.
    previous: Option<AttemptError>,
    /// Bytes each mirror delivered (of the final file), for the summary of a spread download.
    served: Vec<u64>,
    /// The last request failed: a 206 to the next piece is a resume.
    resume: bool,
    /// What [`Planner::record`] decided comes next (a backoff, the end), for [`Planner::next`].
    decided: Option<Step>,
    /// Each copy from one mirror: bytes are never continued from another.
    whole_copies: bool,
}

impl Planner {
    /// A download from `urls` (in the node's order), spread over them with a `plan`.
    pub fn new(urls: &[Url], plan: Option<&pieces::Plan>, policy: Policy, rng: Rng) -> Planner {
        Planner {
            shown: urls.iter().map(redact_url).collect(),
            pool: Pool::new(urls, plan),
            same_validators: plan.is_some_and(|p| p.same_validators),
            policy,
            rng,
            state: State::default(),
            failed: 0,
            failures: 0,
            previous: None,
            served: vec![0; urls.len()],
            resume: false,
            decided: None,
            whole_copies: false,
        }
    }

    /// The same download, for after a copy that did not verify: one mirror at a time, each
    /// copy from one mirror alone (moving to another starts the file over, so a copy that does
    /// not verify again names its mirror), and the mirrors in `refused` (whose copies did not
    /// verify) never asked. Starts at the first of the others in the node's order.
    pub fn whole_copies(mut self, refused: &[usize]) -> Planner {
        self.pool.single_without(refused);
        self.whole_copies = true;
        self
    }

    /// The resume state, for the attempt to carry on from and update.
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Instant) -> Step {
        if let Some(step) = self.decided.take() {
            return step;
        }
        let (have, total) = (self.state.have, self.state.total);
        let Some(pick) = self.pool.pick(have, total, now) else {
            return Step::Stop(Stop::NoMirror);
        };
        // A copy from one mirror: bytes another mirror sent are thrown away, not continued.
        if self.whole_copies && have > 0 && self.served.get(pick.mirror) != Some(&have) {
            log::info!(
                "{}: fetching the whole file from this mirror, not continuing another's bytes",
                self.shown(pick.mirror)
            );
            self.state.restart();
            self.served.fill(0);
        }
        let (have, total) = (self.state.have, self.state.total);
        let same_validators = self.same_validators;
        let piece = |end, resume| Piece {
            end,
            same_validators,
            resume,
        };
        // Once the length is known, the piece after this one and its mirror are too.
        let then = pick
            .end
            .filter(|&e| total.is_some_and(|t| e < t))
            .and_then(|from| {
                let p = self.pool.pick(from, total, now)?;
                Some(NextPiece {
                    mirror: p.mirror,
                    from,
                    piece: piece(p.end?, false),
                    validators: self.state.validators.clone(),
                })
            });
        Step::Attempt(Attempt {
            mirror: pick.mirror,
            piece: pick.end.map(|end| piece(end, self.resume)),
            then,
            have,
            restarts: self.state.restarts,
        })
    }

    /// How `attempt` ended (the resume state already updated by it), at `now`.
    pub fn record(&mut self, attempt: &Attempt, outcome: Result<(), AttemptError>, now: Instant) {
        tally(
            &mut self.served,
            attempt.mirror,
            attempt.have,
            self.state.have,
            self.state.restarts != attempt.restarts,
        );
        match outcome {
            Ok(()) => self.succeeded(attempt.mirror),
            Err(e) => self.failed(attempt, e, now),
        }
    }

    fn succeeded(&mut self, m: usize) {
        self.resume = false;
        self.pool.succeeded(m);
        // Not done: the next piece, or the rest of a range a server cut short (each answer
        // that ends well adds at least a byte).
        let done = self.state.total.is_none_or(|t| self.state.have >= t);
        if done {
            if self.pool.pieces() {
                log::info!("pieces served by {}", self.served_line());
            }
            let mut sources =
                (0..self.served.len()).filter(|&i| self.served.get(i).is_some_and(|b| *b > 0));
            let from = match (sources.next(), sources.next()) {
                (Some(only), None) => Some(only),
                // An empty file: the mirror that sent it.
                (None, _) => Some(m),
                (Some(_), Some(_)) => None,
            };
            self.decided = Some(Step::Done(Done {
                state: std::mem::take(&mut self.state),
                attempts: self.failed.saturating_add(1),
                url: self.shown(m),
                from,
            }));
            return;
        }
        // Unverified, pieces need a validator to tie the mirrors together.
        if self.pool.pieces() && self.same_validators && self.state.validators.if_range().is_none()
        {
            log::warn!(
                "{}: no ETag or Last-Modified to tie the other mirrors' pieces to, and no hash over the image; fetching it all from this mirror",
                self.shown(m)
            );
            self.pool.single_from(m);
        }
    }

    fn failed(&mut self, attempt: &Attempt, err: AttemptError, now: Instant) {
        self.failed = self.failed.saturating_add(1);
        self.resume = true;
        let m = attempt.mirror;
        self.decided = match err {
            AttemptError::Deadline => Some(Step::Stop(Stop::Deadline {
                url: self.shown(m),
                attempts: self.failed,
                last: self.previous.take().unwrap_or(err),
            })),
            AttemptError::OtherFile(_) => {
                self.other_file(m, &err);
                None
            }
            _ if !err.is_retryable() => self.dead(m, err, now),
            _ => Some(self.retry(attempt, err, now)),
        };
    }

    /// Mirror `m` does not continue the file the pieces came from: the others serve its
    /// pieces, the bytes kept; when none is left to, the whole file from the first mirror.
    fn other_file(&mut self, m: usize, err: &AttemptError) {
        if self.pool.other_file(m) {
            log::warn!(
                "{}: {}; the other mirrors serve its pieces",
                self.shown(m),
                report(err)
            );
            return;
        }
        let first = self.pool.first_alive().unwrap_or(0);
        log::warn!(
            "{}: {}; no mirror is left to serve pieces, fetching the whole file from {}",
            self.shown(m),
            report(err),
            self.shown(first)
        );
        self.state.restart();
        self.served.fill(0);
        self.pool.single_from(first);
    }

    /// Mirror `m` gave an answer retrying cannot change: the next mirror at once, or the end
    /// when none is left.
    fn dead(&mut self, m: usize, err: AttemptError, now: Instant) -> Option<Step> {
        let shown = self.shown(m);
        if !self.pool.dead(m) {
            return Some(Step::Stop(Stop::Refused {
                url: shown,
                source: err,
            }));
        }
        log::warn!("{shown}: {}; trying {}", report(&err), self.next_shown(now));
        None
    }

    /// A failure retrying may fix: back off (full jitter, the window doubling with each
    /// failure in a row that brought no byte), unless the retries or the deadline are used up.
    fn retry(&mut self, attempt: &Attempt, err: AttemptError, now: Instant) -> Step {
        let m = attempt.mirror;
        let shown = self.shown(m);
        self.failures = if self.state.have > attempt.have {
            0
        } else {
            self.failures.saturating_add(1)
        };
        let delay = self.policy.backoff.delay(
            self.failures.saturating_sub(1),
            err.retry_after(),
            &mut self.rng,
        );
        let (retries, deadline) = (self.policy.retries, self.policy.deadline);
        match retry::next(self.failed, retries, delay, now, deadline) {
            Next::Retry(d) => {
                self.pool.failed(m, now);
                // Spread, a mirror that has not failed takes the piece over at once.
                let d = match self.pool.pick(self.state.have, self.state.total, now) {
                    Some(p) if p.healthy && p.mirror != m => Duration::ZERO,
                    _ => d,
                };
                log::warn!(
                    "{shown}: {}; retry {} in {:.1} s{}",
                    report(&err),
                    self.failed,
                    d.as_secs_f64(),
                    if self.shown.len() > 1 {
                        format!(" from {}", self.next_shown(now))
                    } else {
                        String::new()
                    }
                );
                self.previous = Some(err);
                Step::Wait(d)
            }
            Next::RetriesExhausted => Step::Stop(Stop::GaveUp {
                url: shown,
                attempts: self.failed,
                last: err,
            }),
            Next::DeadlinePassed => Step::Stop(Stop::Deadline {
                url: shown,
                attempts: self.failed,
                last: err,
            }),
        }
    }

    /// Mirror `m`'s URL, redacted.
    fn shown(&self, m: usize) -> String {
        self.shown.get(m).cloned().unwrap_or_default()
    }

    /// The mirror the next request goes to, for the log.
    fn next_shown(&self, now: Instant) -> String {
        self.pool
            .pick(self.state.have, self.state.total, now)
            .map(|p| self.shown(p.mirror))
            .unwrap_or_default()
    }

    /// `http://a/img 4.0 MiB, http://b/img 3.0 MiB`.
    fn served_line(&self) -> String {
        self.shown
            .iter()
            .zip(&self.served)
            .map(|(u, b)| format!("{u} {}", mib(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// After a copy that did not verify: the mirror to fetch the whole file from next, the first in
/// the node's order not in `refused`, once the copy's own mirror (`from`, when it came from
/// one) is added there. `None`: every mirror's copy failed verification.
pub fn next_whole_copy(
    refused: &mut Vec<usize>,
    from: Option<usize>,
    mirrors: usize,
) -> Option<usize> {
    if let Some(m) = from.filter(|m| !refused.contains(m)) {
        refused.push(m);
    }
    (0..mirrors).find(|m| !refused.contains(m))
}

/// Counts what mirror `m` added to the file; when the attempt started over (`restarted`), the
/// file is what it sent from zero.
fn tally(served: &mut [u64], m: usize, before: u64, after: u64, restarted: bool) {
    let from = if restarted {
        served.fill(0);
        0
    } else {
        before
    };
    if let Some(s) = served.get_mut(m) {
        *s = s.saturating_add(after.saturating_sub(from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    const MIB: u64 = 1 << 20;
    const S: fn(u64) -> Duration = Duration::from_secs;

    fn urls(n: usize) -> Vec<Url> {
        (0..n)
            .map(|i| Url::parse(&format!("http://mirror{i}.site/img?token={i}")).unwrap())
            .collect()
    }

    fn policy(retries: Option<u32>) -> Policy {
        Policy {
            retries,
            backoff: Backoff {
                base: S(10),
                cap: S(30),
            },
            deadline: Deadline::NONE,
        }
    }

    fn planner(n: usize, plan: Option<&pieces::Plan>, retries: Option<u32>) -> Planner {
        Planner::new(&urls(n), plan, policy(retries), Rng::from_seed(1))
    }

    fn spread(n: usize, same_validators: bool) -> Planner {
        let plan = pieces::Plan::new(&urls(n), "node", same_validators).unwrap();
        planner(n, Some(&plan), None)
    }

    fn attempt(p: &mut Planner, now: Instant) -> Attempt {
        match p.next(now) {
            Step::Attempt(a) => a,
            s => panic!("expected an attempt, got {s:?}"),
        }
    }

    fn stall() -> AttemptError {
        AttemptError::Stall(30)
    }

    fn status(code: u16) -> AttemptError {
        AttemptError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
        }
    }

    /// What the transfer does with a good answer: `to` bytes of a `total`-byte file.
    fn received(p: &mut Planner, to: u64, total: u64, etag: Option<&str>) {
        let st = p.state_mut();
        st.have = to;
        st.total = Some(total);
        st.validators.etag = etag.map(Into::into);
    }

    #[test]
    fn one_mirror_one_attempt() {
        let now = Instant::now();
        let mut p = planner(1, None, None);
        let a = attempt(&mut p, now);
        assert_eq!((a.mirror, a.piece, &a.then), (0, None, &None));
        received(&mut p, 100, 100, None);
        p.record(&a, Ok(()), now);
        match p.next(now) {
            Step::Done(d) => {
                assert_eq!((d.state.have, d.attempts), (100, 1));
                assert_eq!(d.url, "http://mirror0.site/img?…");
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn a_failure_backs_off_then_the_next_mirror_resumes() {
        let now = Instant::now();
        let mut p = planner(2, None, None);
        let a = attempt(&mut p, now);
        p.failures = 3;
        received(&mut p, 40, 100, Some("\"v\""));
        p.record(&a, Err(stall()), now);
        // Progress was made: the window is the base (10 s) again.
        assert_eq!(p.failures, 0);
        assert!(matches!(p.next(now), Step::Wait(d) if d <= S(10)));
        let b = attempt(&mut p, now);
        assert_eq!((b.mirror, b.piece), (1, None));
        assert_eq!(p.state_mut().have, 40, "the bytes are kept for a resume");
        received(&mut p, 100, 100, Some("\"v\""));
        p.record(&b, Ok(()), now);
        match p.next(now) {
            Step::Done(d) => {
                assert_eq!(d.attempts, 2);
                assert_eq!(d.url, "http://mirror1.site/img?…");
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn failures_without_progress_double_the_window_until_the_retries_are_used_up() {
        let now = Instant::now();
        let mut waits = Vec::new();
        let mut p = planner(1, None, Some(3));
        for n in 1..=3 {
            let a = attempt(&mut p, now);
            p.record(&a, Err(stall()), now);
            assert_eq!(p.failures, n);
            match p.next(now) {
                Step::Wait(d) => waits.push(d),
                s => panic!("{s:?}"),
            }
        }
        // Windows of 10, 20 and 30 (capped) seconds.
        assert!(waits[0] <= S(10) && waits[1] <= S(20) && waits[2] <= S(30));
        let a = attempt(&mut p, now);
        p.record(&a, Err(stall()), now);
        assert!(matches!(
            p.next(now),
            Step::Stop(Stop::GaveUp {
                attempts: 4,
                last: AttemptError::Stall(_),
                ..
            })
        ));
    }

    #[test]
    fn the_deadline_reports_what_went_wrong_before_it() {
        let now = Instant::now();
        let mut p = planner(1, None, None);
        let a = attempt(&mut p, now);
        p.record(&a, Err(status(503)), now);
        assert!(matches!(p.next(now), Step::Wait(_)));
        let a = attempt(&mut p, now);
        p.record(&a, Err(AttemptError::Deadline), now);
        match p.next(now) {
            Step::Stop(Stop::Deadline { attempts, last, .. }) => {
                assert_eq!(attempts, 2);
                assert!(matches!(last, AttemptError::Status { .. }), "{last:?}");
            }
            s => panic!("{s:?}"),
        }
        // A deadline that passes before the backoff: the failure itself is the cause.
        let mut p = Planner::new(
            &urls(1),
            None,
            Policy {
                deadline: Deadline::after_from(now, Some(S(1))),
                ..policy(None)
            },
            Rng::from_seed(1),
        );
        let a = attempt(&mut p, now);
        p.record(&a, Err(stall()), now + S(2));
        assert!(matches!(
            p.next(now),
            Step::Stop(Stop::Deadline {
                attempts: 1,
                last: AttemptError::Stall(_),
                ..
            })
        ));
    }

    #[test]
    fn an_answer_retrying_cannot_change_moves_on_at_once_or_ends() {
        let now = Instant::now();
        let mut p = planner(2, None, None);
        let a = attempt(&mut p, now);
        p.record(&a, Err(status(404)), now);
        let b = attempt(&mut p, now);
        assert_eq!(b.mirror, 1, "no backoff before another mirror");
        p.record(&b, Err(status(403)), now);
        match p.next(now) {
            Step::Stop(Stop::Refused { url, source }) => {
                assert_eq!(url, "http://mirror1.site/img?…");
                assert!(matches!(source, AttemptError::Status { .. }));
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn pieces_after_the_first_are_sent_ahead_with_the_validators() {
        let now = Instant::now();
        let mut p = spread(3, true);
        let a = attempt(&mut p, now);
        // The length is not known yet: the first piece, nothing ahead.
        let first = a.piece.unwrap();
        assert_eq!(first.end, pieces::FIRST_PIECE);
        assert!(first.same_validators && !first.resume);
        assert_eq!(a.then, None);
        received(&mut p, pieces::FIRST_PIECE, 8 * MIB, Some("\"v\""));
        p.record(&a, Ok(()), now);
        let b = attempt(&mut p, now);
        assert_eq!(b.piece.unwrap().end, 2 * MIB);
        let then = b.then.clone().unwrap();
        assert_eq!((then.from, then.piece.end), (2 * MIB, 3 * MIB));
        assert_eq!(then.validators.etag.as_deref(), Some("\"v\""));
        assert!(!then.piece.resume);
        // The last piece has nothing after it.
        received(&mut p, 7 * MIB, 8 * MIB, Some("\"v\""));
        p.record(&b, Ok(()), now);
        let last = attempt(&mut p, now);
        assert_eq!((last.piece.unwrap().end, &last.then), (8 * MIB, &None));
        received(&mut p, 8 * MIB, 8 * MIB, Some("\"v\""));
        p.record(&last, Ok(()), now);
        assert!(matches!(p.next(now), Step::Done(Done { attempts: 1, .. })));
    }

    #[test]
    fn a_spread_failure_goes_to_a_healthy_mirror_at_once_as_a_resume() {
        let now = Instant::now();
        let mut p = spread(3, false);
        let a = attempt(&mut p, now);
        received(&mut p, 100, 8 * MIB, None);
        p.record(&a, Err(stall()), now);
        assert!(matches!(p.next(now), Step::Wait(Duration::ZERO)));
        let b = attempt(&mut p, now);
        assert_ne!(b.mirror, a.mirror, "the failed mirror is passed over");
        assert!(b.piece.unwrap().resume);
        // After a success the next piece is no resume.
        received(&mut p, MIB, 8 * MIB, None);
        p.record(&b, Ok(()), now);
        let c = attempt(&mut p, now);
        assert!(!c.piece.unwrap().resume);
        // Within DOWN_FOR the failed mirror serves none of the pieces.
        let mut at = MIB;
        while at < 8 * MIB {
            let pick = p.pool.pick(at, Some(8 * MIB), now).unwrap();
            assert_ne!(pick.mirror, a.mirror);
            at = pick.end.unwrap();
        }
    }

    #[test]
    fn a_mirror_with_another_file_is_left_out_and_the_last_one_starts_over_whole() {
        let now = Instant::now();
        let mut p = spread(2, true);
        let a = attempt(&mut p, now);
        received(&mut p, MIB, 8 * MIB, Some("\"v\""));
        p.record(&a, Ok(()), now);
        let b = attempt(&mut p, now);
        p.record(&b, Err(AttemptError::OtherFile("x".into())), now);
        let c = attempt(&mut p, now);
        assert_ne!(c.mirror, b.mirror, "left out, no backoff");
        assert_eq!(p.state_mut().have, MIB, "the bytes are kept");
        p.record(&c, Err(AttemptError::OtherFile("y".into())), now);
        // None left to serve pieces: the whole file from the first mirror, from zero.
        let d = attempt(&mut p, now);
        assert_eq!((d.mirror, d.piece, d.then), (0, None, None));
        assert_eq!(p.state_mut().have, 0);
        assert_eq!(p.state_mut().restarts, 1);
        assert_eq!(p.served, [0, 0]);
    }

    #[test]
    fn unverified_pieces_without_validators_continue_from_one_mirror() {
        let now = Instant::now();
        let mut p = spread(3, true);
        let a = attempt(&mut p, now);
        received(&mut p, MIB, 8 * MIB, None);
        p.record(&a, Ok(()), now);
        let b = attempt(&mut p, now);
        assert_eq!((b.mirror, b.piece, b.then), (a.mirror, None, None));
        // With a hash over the image the pieces stay spread.
        let mut p = spread(3, false);
        let a = attempt(&mut p, now);
        received(&mut p, MIB, 8 * MIB, None);
        p.record(&a, Ok(()), now);
        assert!(attempt(&mut p, now).piece.is_some());
    }

    #[test]
    fn done_names_the_one_mirror_a_copy_came_from() {
        let now = Instant::now();
        // One mirror throughout.
        let mut p = planner(2, None, None);
        let a = attempt(&mut p, now);
        received(&mut p, 100, 100, None);
        p.record(&a, Ok(()), now);
        assert!(matches!(
            p.next(now),
            Step::Done(Done { from: Some(0), .. })
        ));
        // Resumed on another mirror: nothing tells which sent which bytes.
        let mut p = planner(2, None, None);
        let a = attempt(&mut p, now);
        received(&mut p, 40, 100, Some("\"v\""));
        p.record(&a, Err(stall()), now);
        assert!(matches!(p.next(now), Step::Wait(_)));
        let b = attempt(&mut p, now);
        assert_eq!(b.mirror, 1);
        received(&mut p, 100, 100, Some("\"v\""));
        p.record(&b, Ok(()), now);
        assert!(matches!(p.next(now), Step::Done(Done { from: None, .. })));
        // Pieces from several mirrors.
        let mut p = spread(3, false);
        let mut at = 0;
        loop {
            match p.next(now) {
                Step::Attempt(a) => {
                    at = a.piece.unwrap().end.min(8 * MIB).max(at);
                    received(&mut p, at, 8 * MIB, None);
                    p.record(&a, Ok(()), now);
                }
                Step::Done(d) => {
                    assert_eq!(d.from, None, "{:?}", p.served);
                    break;
                }
                s => panic!("{s:?}"),
            }
        }
    }

    #[test]
    fn whole_copies_skip_refused_mirrors_and_never_continue_another_mirrors_bytes() {
        let now = Instant::now();
        let mut p = planner(3, None, None).whole_copies(&[0]);
        let a = attempt(&mut p, now);
        assert_eq!(
            (a.mirror, a.piece),
            (1, None),
            "the first mirror not refused"
        );
        received(&mut p, 40, 100, Some("\"v\""));
        p.record(&a, Err(stall()), now);
        assert!(matches!(p.next(now), Step::Wait(_)));
        // The next mirror starts the file over: its copy is its own.
        let b = attempt(&mut p, now);
        assert_eq!(b.mirror, 2);
        assert_eq!((p.state_mut().have, p.state_mut().restarts), (0, 1));
        p.record(&b, Err(stall()), now);
        assert!(matches!(p.next(now), Step::Wait(_)));
        // Round again: mirror 0 is never asked.
        let c = attempt(&mut p, now);
        assert_eq!(c.mirror, 1);
        received(&mut p, 100, 100, Some("\"v\""));
        p.record(&c, Ok(()), now);
        assert!(matches!(
            p.next(now),
            Step::Done(Done { from: Some(1), .. })
        ));
        // A resume on the same mirror keeps the bytes.
        let mut p = planner(2, None, None).whole_copies(&[1]);
        let a = attempt(&mut p, now);
        received(&mut p, 40, 100, Some("\"v\""));
        p.record(&a, Err(stall()), now);
        assert!(matches!(p.next(now), Step::Wait(_)));
        let b = attempt(&mut p, now);
        assert_eq!((b.mirror, p.state_mut().have), (0, 40));
        // Every mirror refused: nothing to ask.
        let mut p = planner(2, None, None).whole_copies(&[1, 0]);
        assert!(matches!(p.next(now), Step::Stop(Stop::NoMirror)));
    }

    #[test]
    fn the_next_whole_copy_is_the_first_mirror_whose_copy_was_not_refused() {
        let mut refused = Vec::new();
        // Pieces from several mirrors: nobody to blame, the node's first mirror.
        assert_eq!(next_whole_copy(&mut refused, None, 3), Some(0));
        assert_eq!(next_whole_copy(&mut refused, Some(0), 3), Some(1));
        assert_eq!(next_whole_copy(&mut refused, Some(1), 3), Some(2));
        assert_eq!(next_whole_copy(&mut refused, Some(1), 3), Some(2));
        assert_eq!(refused, [0, 1]);
        assert_eq!(next_whole_copy(&mut refused, Some(2), 3), None);
        // A listed download whose first copy came from its second mirror.
        let mut refused = Vec::new();
        assert_eq!(next_whole_copy(&mut refused, Some(1), 3), Some(0));
        assert_eq!(next_whole_copy(&mut refused, Some(0), 3), Some(2));
    }

    #[test]
    fn no_mirror_left_stops() {
        let now = Instant::now();
        let mut p = planner(0, None, None);
        assert!(matches!(p.next(now), Step::Stop(Stop::NoMirror)));
    }

    #[test]
    fn a_restart_clears_what_mirrors_served() {
        let mut s = vec![0u64; 3];
        tally(&mut s, 0, 0, 100, false);
        tally(&mut s, 1, 100, 250, false);
        assert_eq!(s, [100, 150, 0]);
        tally(&mut s, 2, 250, 400, true);
        assert_eq!(s, [0, 0, 400]);
    }
}
