//! A pipeline's operators spawned in order ([`OperatorChain`]): stage numbers across the whole
//! pipeline (what checkpoints key operator state by), and the sharded part of a view — the first
//! keyed operator and the stateless ones after it as one shard per worker behind hash exchanges
//! ([`crate::shards`]), one exchange per reader lane when the readers run the operators before it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

use super::{Failure, PipelineStatus, Stage, run_operator, supervised};
use crate::checkpoint::{CheckpointReport, OperatorState};
use crate::fanout::CHANNEL_CAPACITY;
use crate::message::Message;
use crate::operator::StreamOperator;

/// Spawns operators one after another, numbering their stages across the whole pipeline.
pub(super) struct OperatorChain {
    pub(super) view: String,
    pub(super) failure: Failure,
    pub(super) status: Arc<PipelineStatus>,
    pub(super) reports: Option<mpsc::UnboundedSender<CheckpointReport>>,
    pub(super) restore: BTreeMap<usize, OperatorState>,
    pub(super) next_stage: usize,
}

impl OperatorChain {
    /// Spawns `op` reading `rx` as the next stage; returns the receiver of its output.
    pub(super) fn spawn(
        &mut self,
        op: Box<dyn StreamOperator>,
        rx: mpsc::Receiver<Message>,
        count_input: bool,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> mpsc::Receiver<Message> {
        let index = self.next_stage;
        self.next_stage += 1;
        let restore = self.restore.remove(&index);
        self.spawn_stage(op, rx, count_input, (index, restore, None), tasks)
    }

    /// Spawns `operators` in order reading `rx` (the first counting the pipeline's input when
    /// `count_first`). With `copies`, the first keyed operator and the stateless ones after it
    /// run as one shard per copy (the originals being shard 0) behind a hash exchange, and a
    /// merge joins the shards before the rest.
    pub(super) fn spawn_all(
        &mut self,
        mut operators: Vec<Box<dyn StreamOperator>>,
        copies: Vec<Vec<Box<dyn StreamOperator>>>,
        mut rx: mpsc::Receiver<Message>,
        count_first: bool,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> mpsc::Receiver<Message> {
        let (start, end, key) = match crate::shards::sharded_segment(&operators, &copies) {
            Some(s) => (s.start, s.end, s.key),
            None => (operators.len(), operators.len(), Vec::new()),
        };
        let after = operators.split_off(end);
        let sharded = operators.split_off(start);
        for (i, op) in operators.into_iter().enumerate() {
            rx = self.spawn(op, rx, count_first && i == 0, tasks);
        }
        if sharded.is_empty() {
            return rx;
        }
        let mut shard_operators = vec![sharded];
        for mut copy in copies {
            let mut own = copy.split_off(start);
            own.truncate(end - start);
            shard_operators.push(own);
        }
        let shards = shard_operators.len();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| mpsc::channel::<Message>(CHANNEL_CAPACITY))
            .unzip();
        let counter = Arc::clone(&self.status);
        let count_exchange = count_first && start == 0;
        let exchange = crate::shards::exchange(rx, key, senders, move |rows| {
            if count_exchange {
                counter.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
            }
        });
        tasks.push(tokio::spawn(
            supervised("exchange".to_string(), self.failure.clone(), exchange)
                .instrument(info_span!("exchange", view = %self.view, shards)),
        ));
        self.spawn_shards(shard_operators, receivers, after, tasks)
    }

    /// Each shard's operators (`shard_operators[shard]`, reading `receivers[shard]`), a merge of
    /// the shards, then the operators `after` them; returns the receiver of the last.
    fn spawn_shards(
        &mut self,
        shard_operators: Vec<Vec<Box<dyn StreamOperator>>>,
        receivers: Vec<mpsc::Receiver<Message>>,
        after: Vec<Box<dyn StreamOperator>>,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> mpsc::Receiver<Message> {
        let shards = shard_operators.len();
        let stages = shard_operators.first().map_or(0, Vec::len);
        // Every shard's copy of an operator is the same stage: one state in checkpoints, split
        // by key group when restored.
        let first = self.next_stage;
        self.next_stage += stages;
        let restores: Vec<Option<OperatorState>> = (first..self.next_stage)
            .map(|index| self.restore.remove(&index))
            .collect();
        let mut outputs = Vec::with_capacity(shards);
        for (shard, (own, mut shard_rx)) in shard_operators.into_iter().zip(receivers).enumerate() {
            for (k, op) in own.into_iter().enumerate() {
                let stage = (first + k, restores[k].clone(), Some((shard, shards)));
                shard_rx = self.spawn_stage(op, shard_rx, false, stage, tasks);
            }
            outputs.push(shard_rx);
        }
        let (tx, merged) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
        let merge = crate::merge::merge_inputs(outputs, vec![false; shards], false, tx, |_| {});
        tasks.push(tokio::spawn(
            supervised("merge of shards".to_string(), self.failure.clone(), merge)
                .instrument(info_span!("merge", view = %self.view)),
        ));
        let mut rx = merged;
        for op in after {
            rx = self.spawn(op, rx, false, tasks);
        }
        rx
    }

    /// The sharded `segment` at the head of `operators` behind one exchange per reader lane:
    /// each lane (with `count` set when no operator of its own counted its rows as the view's
    /// input) hashes its rows to every shard, and each shard merges what the lanes send it (the
    /// least watermark, barriers aligned). So no single task handles every row between the
    /// readers and the shards.
    pub(super) fn spawn_lane_shards(
        &mut self,
        mut operators: Vec<Box<dyn StreamOperator>>,
        copies: Vec<Vec<Box<dyn StreamOperator>>>,
        lanes: Vec<(mpsc::Receiver<Message>, bool)>,
        segment: crate::shards::KeyedSegment,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> mpsc::Receiver<Message> {
        let after = operators.split_off(segment.end);
        let mut shard_operators = vec![operators];
        for mut copy in copies {
            copy.truncate(segment.end);
            shard_operators.push(copy);
        }
        let shards = shard_operators.len();
        let mut shard_inputs: Vec<Vec<mpsc::Receiver<Message>>> = (0..shards)
            .map(|_| Vec::with_capacity(lanes.len()))
            .collect();
        for (lane, (rx, count)) in lanes.into_iter().enumerate() {
            let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
                .map(|_| mpsc::channel::<Message>(CHANNEL_CAPACITY))
                .unzip();
            for (inputs, receiver) in shard_inputs.iter_mut().zip(receivers) {
                inputs.push(receiver);
            }
            let counter = Arc::clone(&self.status);
            let exchange = crate::shards::exchange(rx, segment.key.clone(), senders, move |rows| {
                if count {
                    counter.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
                }
            });
            tasks.push(tokio::spawn(
                supervised("exchange".to_string(), self.failure.clone(), exchange)
                    .instrument(info_span!("exchange", view = %self.view, lane, shards)),
            ));
        }
        let receivers = shard_inputs
            .into_iter()
            .map(|inputs| {
                let lanes = inputs.len();
                let (tx, merged) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
                let merge =
                    crate::merge::merge_inputs(inputs, vec![false; lanes], false, tx, |_| {});
                tasks.push(tokio::spawn(
                    supervised("merge of lanes".to_string(), self.failure.clone(), merge)
                        .instrument(info_span!("merge", view = %self.view)),
                ));
                merged
            })
            .collect();
        self.spawn_shards(shard_operators, receivers, after, tasks)
    }

    /// Spawns `op` reading `rx` as stage `(index, state to restore, (shard, of shards))`.
    pub(super) fn spawn_stage(
        &mut self,
        op: Box<dyn StreamOperator>,
        rx: mpsc::Receiver<Message>,
        count_input: bool,
        (index, restore, shard): (usize, Option<OperatorState>, Option<(usize, usize)>),
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> mpsc::Receiver<Message> {
        let (tx, next_rx) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
        let name = op.name();
        let span = match shard {
            Some((shard, _)) => {
                info_span!("operator", view = %self.view, index, shard, name = %name)
            }
            None => info_span!("operator", view = %self.view, index, name = %name),
        };
        let stage = Stage {
            index,
            reports: self.reports.clone(),
            restore,
            shard,
        };
        let run = run_operator(op, rx, tx, Arc::clone(&self.status), count_input, stage);
        tasks.push(tokio::spawn(
            supervised(format!("operator \"{name}\""), self.failure.clone(), run).instrument(span),
        ));
        next_rx
    }
}
