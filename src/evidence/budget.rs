//! The global bound on log bytes being read at once, shared by every triage.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB so that budgets far above 4 GiB still fit a permit count.
const UNIT: u64 = 1024;

/// A budget on the log bytes all triages have asked the API server for and not yet finished
/// reading. Every log read reserves its byte limit for as long as it runs, so however many
/// triages run, the log data in flight (and the memory and kubelet time it takes) stays
/// within the budget; a read that does not fit waits for others to finish.
#[derive(Clone, Debug)]
pub struct LogBudget {
    permits: Arc<Semaphore>,
    units: u64,
}

impl LogBudget {
    pub fn new(bytes: u64) -> Self {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(u32::MAX));
        LogBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Waits until `bytes` may be read; a read larger than the whole budget takes all of it.
    /// The reservation lasts until the returned guard is dropped.
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        let units = bytes.div_ceil(UNIT).clamp(1, self.units) as u32;
        // The semaphore is never closed, so acquiring cannot fail.
        Reservation {
            _permit: self.permits.clone().acquire_many_owned(units).await.ok(),
        }
    }

    #[cfg(test)]
    fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }
}

/// Part of a [`LogBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reads_wait_for_room_and_get_it_back() {
        let budget = LogBudget::new(8 * UNIT);
        let a = budget.reserve(5 * UNIT).await;
        assert_eq!(budget.available(), 3 * UNIT);
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(4 * UNIT));
        assert!(waiting.await.is_err(), "4 KiB does not fit beside 5 of 8");
        drop(a);
        let _b = budget.reserve(4 * UNIT).await;
        assert_eq!(budget.available(), 4 * UNIT);
    }

    #[tokio::test]
    async fn a_read_larger_than_the_budget_takes_all_of_it() {
        let budget = LogBudget::new(4 * UNIT);
        let all = budget.reserve(u64::MAX).await;
        assert_eq!(budget.available(), 0);
        drop(all);
        assert_eq!(budget.available(), 4 * UNIT);
        let _zero = budget.reserve(0).await;
        assert_eq!(budget.available(), 3 * UNIT, "an empty read still counts");
    }
}
