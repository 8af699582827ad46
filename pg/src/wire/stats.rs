//! Counters of the PostgreSQL front end for `/metrics`: connections opened and open, statements
//! run and statements that failed. Relaxed atomics: figures, not synchronisation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The front end's counters, shared by every connection.
#[derive(Debug, Default)]
pub struct WireStats {
    connections: AtomicU64,
    closed: AtomicU64,
    statements: AtomicU64,
    failed: AtomicU64,
}

/// A snapshot of [`WireStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireFigures {
    /// Connections accepted since the start.
    pub connections_total: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Statements run (simple and extended protocol).
    pub statements_total: u64,
    /// Statements that ended in an error.
    pub errors_total: u64,
}

impl WireStats {
    /// Counts a connection as open until the guard drops.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    /// Counts a statement and whether it failed.
    pub fn statement(&self, failed: bool) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The figures now.
    pub fn figures(&self) -> WireFigures {
        let connections_total = self.connections.load(Ordering::Relaxed);
        WireFigures {
            connections_total,
            connections_open: connections_total.saturating_sub(self.closed.load(Ordering::Relaxed)),
            statements_total: self.statements.load(Ordering::Relaxed),
            errors_total: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// One open connection; counted closed when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<WireStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_count_while_open() {
        let stats = Arc::new(WireStats::default());
        let a = stats.connection();
        let b = stats.connection();
        drop(a);
        stats.statement(false);
        stats.statement(true);
        assert_eq!(
            stats.figures(),
            WireFigures {
                connections_total: 2,
                connections_open: 1,
                statements_total: 2,
                errors_total: 1
            }
        );
        drop(b);
        assert_eq!(stats.figures().connections_open, 0);
    }
}
