//! Combining watermarks of several inputs (partitions of a source, inputs of an operator): the
//! combined watermark is the minimum over inputs that are not idle, and never goes backwards.

use std::collections::BTreeMap;

use crate::message::Watermark;

#[derive(Debug, Clone, Copy)]
struct InputState {
    /// Highest watermark candidate seen on this input (nanoseconds).
    watermark: Option<i64>,
    /// Idle inputs do not hold the combined watermark back.
    idle: bool,
}

/// Tracks per-input watermarks and yields the combined one.
#[derive(Debug, Default, Clone)]
pub struct WatermarkTracker {
    inputs: BTreeMap<u32, InputState>,
    /// Last combined event-time watermark handed out; it only moves forward.
    combined: Option<i64>,
}

impl WatermarkTracker {
    /// Notes data on `input` whose watermark candidate is `candidate` (None: rows had no time).
    pub fn observe(&mut self, input: u32, candidate: Option<i64>) {
        let state = self.inputs.entry(input).or_insert(InputState {
            watermark: None,
            idle: false,
        });
        state.idle = false;
        if let Some(c) = candidate {
            state.watermark = Some(state.watermark.map_or(c, |w| w.max(c)));
        }
    }

    /// Notes a watermark message from `input`.
    pub fn on_watermark(&mut self, input: u32, watermark: Watermark) {
        match watermark {
            Watermark::Idle => self.mark_idle(input),
            Watermark::EventTime(t) => self.observe(input, Some(t)),
        }
    }

    /// The highest watermark candidate seen on `input` (nanoseconds).
    pub fn input_watermark(&self, input: u32) -> Option<i64> {
        self.inputs.get(&input).and_then(|s| s.watermark)
    }

    /// Highest candidate of every input that has one, for checkpoints.
    pub fn input_watermarks(&self) -> BTreeMap<u32, i64> {
        self.inputs
            .iter()
            .filter_map(|(k, s)| s.watermark.map(|w| (*k, w)))
            .collect()
    }

    /// The last combined watermark handed out.
    pub fn combined(&self) -> Option<i64> {
        self.combined
    }

    /// Recovery: per-input candidates and the combined watermark of a checkpoint.
    pub fn restore(&mut self, inputs: &BTreeMap<u32, i64>, combined: Option<i64>) {
        for (input, w) in inputs {
            self.inputs.insert(
                *input,
                InputState {
                    watermark: Some(*w),
                    idle: false,
                },
            );
        }
        self.combined = combined;
    }

    /// Marks one input idle.
    pub fn mark_idle(&mut self, input: u32) {
        self.inputs
            .entry(input)
            .or_insert(InputState {
                watermark: None,
                idle: true,
            })
            .idle = true;
    }

    /// Marks every input idle.
    pub fn mark_all_idle(&mut self) {
        for s in self.inputs.values_mut() {
            s.idle = true;
        }
    }

    /// The combined watermark: minimum over non-idle inputs; `Idle` when all are idle.
    pub fn current(&mut self) -> Option<Watermark> {
        let active: Vec<&InputState> = self.inputs.values().filter(|s| !s.idle).collect();
        if active.is_empty() {
            if self.inputs.is_empty() {
                return None;
            }
            // Everything went idle at once (say the partition with data and one that never had
            // any time out together): the time the inputs did reach still counts, or the last
            // rows' windows would wait for data that is not coming.
            let reached = self.inputs.values().filter_map(|s| s.watermark).min();
            if let Some(t) = reached
                && self.combined.is_none_or(|c| t > c)
            {
                self.combined = Some(t);
                return Some(Watermark::EventTime(t));
            }
            return Some(Watermark::Idle);
        }
        // An active input that has produced no time yet holds everything back.
        let min = active
            .iter()
            .map(|s| s.watermark)
            .try_fold(i64::MAX, |m, w| w.map(|w| m.min(w)))?;
        let next = self.combined.map_or(min, |c| c.max(min));
        self.combined = Some(next);
        Some(Watermark::EventTime(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_active_inputs() {
        let mut t = WatermarkTracker::default();
        t.observe(0, Some(10));
        t.observe(1, Some(5));
        assert_eq!(t.current(), Some(Watermark::EventTime(5)));
        t.mark_idle(1);
        assert_eq!(t.current(), Some(Watermark::EventTime(10)));
        t.observe(1, Some(7));
        // Never goes backwards even though input 1 is behind.
        assert_eq!(t.current(), Some(Watermark::EventTime(10)));
        t.mark_all_idle();
        assert_eq!(t.current(), Some(Watermark::Idle));
    }

    #[test]
    fn inputs_going_idle_together_still_release_their_time() {
        let mut t = WatermarkTracker::default();
        t.observe(0, None);
        t.observe(1, None);
        t.observe(0, Some(14));
        // Input 1 never had time, so nothing could be released yet.
        assert_eq!(t.current(), None);
        t.mark_all_idle();
        assert_eq!(t.current(), Some(Watermark::EventTime(14)));
        assert_eq!(t.current(), Some(Watermark::Idle));
    }

    #[test]
    fn input_without_time_holds_back() {
        let mut t = WatermarkTracker::default();
        t.observe(0, Some(10));
        t.observe(1, None);
        assert_eq!(t.current(), None);
    }
}
