//! [`WindowSpec`]: the one description of a window that planning, assignment, aggregation,
//! EXPLAIN and checkpoints share.
//!
//! Times are nanoseconds. Tumbling, hopping and cumulating windows are fixed by the clock: a
//! row's windows follow from its time alone, and each window is identified by its end (unique
//! within one spec, where starts are not: cumulating windows share theirs). Sessions depend on
//! the other rows of the same key, so only the aggregate that keeps them can assign them.

use crate::error::{EngineError, Result};

/// A window definition; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// `TUMBLE`: windows of `size`, one after the other, aligned to `offset`.
    Tumble {
        /// Window length.
        size: i64,
        /// Alignment: starts are `offset` modulo `size`.
        offset: i64,
    },
    /// `HOP`: windows of `size` starting every `slide` (any two positive lengths).
    Hop {
        /// Window length.
        size: i64,
        /// Time between starts.
        slide: i64,
        /// Alignment: starts are `offset` modulo `slide`.
        offset: i64,
    },
    /// `CUMULATE`: within each `size`-long cycle, the windows `[c, c + step)`,
    /// `[c, c + 2·step)`, …, `[c, c + size)` (totals so far, updated every step).
    Cumulate {
        /// Growth per window; divides `size`.
        step: i64,
        /// Cycle length, the longest window.
        size: i64,
        /// Alignment: cycles start at `offset` modulo `size`.
        offset: i64,
    },
    /// `SESSION`: rows of one key closer than `gap` share a window, which ends `gap` after its
    /// last row.
    Session {
        /// Inactivity that closes a session.
        gap: i64,
    },
}

impl WindowSpec {
    /// Checks lengths: positive, and a cumulating step dividing its cycle.
    pub fn validate(&self) -> Result<()> {
        let function = self.function();
        let positive = match *self {
            WindowSpec::Tumble { size, .. } => size > 0,
            WindowSpec::Hop { size, slide, .. } => size > 0 && slide > 0,
            WindowSpec::Cumulate { step, size, .. } => step > 0 && size > 0,
            WindowSpec::Session { gap } => gap > 0,
        };
        if !positive {
            return Err(EngineError::User(format!(
                "{function}: window lengths must be positive"
            )));
        }
        if let WindowSpec::Cumulate { step, size, .. } = *self
            && size % step != 0
        {
            return Err(EngineError::User(format!(
                "CUMULATE: the maximum size ({}) must be a whole multiple of the step ({})",
                humanize_nanos(size),
                humanize_nanos(step)
            )));
        }
        Ok(())
    }

    /// The SQL relation that makes these windows.
    pub fn function(&self) -> &'static str {
        match self {
            WindowSpec::Tumble { .. } => "TUMBLE",
            WindowSpec::Hop { .. } => "HOP",
            WindowSpec::Cumulate { .. } => "CUMULATE",
            WindowSpec::Session { .. } => "SESSION",
        }
    }

    /// The lengths (besides the offset), for messages: size, slide or step.
    pub fn lengths(&self) -> Vec<i64> {
        match *self {
            WindowSpec::Tumble { size, .. } => vec![size],
            WindowSpec::Hop { size, slide, .. } => vec![size, slide],
            WindowSpec::Cumulate { step, size, .. } => vec![step, size],
            WindowSpec::Session { gap } => vec![gap],
        }
    }

    /// The alignment offset (0 for sessions).
    pub fn offset(&self) -> i64 {
        match *self {
            WindowSpec::Tumble { offset, .. }
            | WindowSpec::Hop { offset, .. }
            | WindowSpec::Cumulate { offset, .. } => offset,
            WindowSpec::Session { .. } => 0,
        }
    }

    /// The longest a clock-aligned window lasts (a session's shortest: its gap).
    pub fn max_size(&self) -> i64 {
        match *self {
            WindowSpec::Tumble { size, .. }
            | WindowSpec::Hop { size, .. }
            | WindowSpec::Cumulate { size, .. } => size,
            WindowSpec::Session { gap } => gap,
        }
    }

    /// True when every window has the same length, so its start and end determine each other.
    pub fn fixed_size(&self) -> bool {
        matches!(self, WindowSpec::Tumble { .. } | WindowSpec::Hop { .. })
    }

    /// Start of the clock-aligned window ending at `end`.
    pub fn start_of(&self, end: i64) -> i64 {
        match *self {
            WindowSpec::Tumble { size, .. } | WindowSpec::Hop { size, .. } => {
                end.saturating_sub(size)
            }
            // The cycle holding `end - 1`: a window ending on a cycle boundary is the whole
            // previous cycle.
            WindowSpec::Cumulate { size, offset, .. } => {
                let last = end.saturating_sub(1);
                last.saturating_sub(last.wrapping_sub(offset).rem_euclid(size))
            }
            WindowSpec::Session { gap } => end.saturating_sub(gap),
        }
    }

    /// End of the fixed-size window starting at `start`.
    pub fn end_of(&self, start: i64) -> i64 {
        start.saturating_add(self.max_size())
    }

    /// One line for EXPLAIN, e.g. `Hop: size=10s slide=2s`.
    pub fn describe(&self) -> String {
        let offset = match self.offset() {
            0 => String::new(),
            o => format!(" offset={}", humanize_nanos(o)),
        };
        match *self {
            WindowSpec::Tumble { size, .. } => format!("size={}{offset}", humanize_nanos(size)),
            WindowSpec::Hop { size, slide, .. } => format!(
                "size={} slide={}{offset}",
                humanize_nanos(size),
                humanize_nanos(slide)
            ),
            WindowSpec::Cumulate { step, size, .. } => format!(
                "step={} max size={}{offset}",
                humanize_nanos(step),
                humanize_nanos(size)
            ),
            WindowSpec::Session { gap } => format!("gap={}", humanize_nanos(gap)),
        }
    }
}

/// Formats a nanosecond duration compactly (`5m`, `1h30m`, `250ms`).
pub fn humanize_nanos(nanos: i64) -> String {
    let units = [
        (86_400_000_000_000i64, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if nanos == 0 {
        return "0s".into();
    }
    let mut rest = nanos.unsigned_abs();
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    for (per, name) in units {
        let per = per.unsigned_abs();
        if rest >= per {
            out.push_str(&format!("{}{name}", rest / per));
            rest %= per;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn cumulating_windows_start_at_their_cycle() {
        let spec = WindowSpec::Cumulate {
            step: 3_600 * S,
            size: 86_400 * S,
            offset: 0,
        };
        assert_eq!(spec.start_of(3_600 * S), 0);
        assert_eq!(spec.start_of(86_400 * S), 0);
        assert_eq!(spec.start_of(86_400 * S + 3_600 * S), 86_400 * S);
        assert_eq!(spec.start_of(-82_800 * S), -86_400 * S);
        assert!(spec.validate().is_ok());
        let uneven = WindowSpec::Cumulate {
            step: 7 * S,
            size: 60 * S,
            offset: 0,
        };
        assert!(uneven.validate().is_err());
    }

    #[test]
    fn humanizes() {
        assert_eq!(humanize_nanos(300_000_000_000), "5m");
        assert_eq!(humanize_nanos(5_400_000_000_000), "1h30m");
    }
}
