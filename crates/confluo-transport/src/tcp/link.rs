//! The link to one peer as a state machine, sans-IO: which connection carries frames, and
//! whether a dial may start. `K` is whatever closes a connection (a `Notify` in the shell).

use crate::stats::ConnectionState;

/// The link to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Link<K> {
    /// No connection, no dial in progress; a dialer (if the address is known) may start one.
    Idle,
    /// Waiting before the next dial.
    BackingOff,
    /// Our dialer is connecting or handshaking.
    Dialing,
    /// Connection `generation` carries frames; `kill` closes it.
    Up { generation: u64, kill: K },
}

impl<K: Clone> Link<K> {
    /// What [`crate::PeerStats`] shows for this state.
    pub(crate) fn state(&self) -> ConnectionState {
        match self {
            Self::Idle => ConnectionState::Disconnected,
            Self::BackingOff => ConnectionState::BackingOff,
            Self::Dialing => ConnectionState::Connecting,
            Self::Up { .. } => ConnectionState::Connected,
        }
    }

    /// The peer got an address to dial: an idle link starts backing off (the dialer's first
    /// wait). Other states are unchanged.
    pub(crate) fn become_dialable(&mut self) {
        if matches!(self, Self::Idle) {
            *self = Self::BackingOff;
        }
    }

    /// Idle or backing off -> dialing. False if connected or already dialing.
    pub(crate) fn try_begin_dial(&mut self) -> bool {
        match self {
            Self::Idle | Self::BackingOff => {
                *self = Self::Dialing;
                true
            }
            Self::Dialing | Self::Up { .. } => false,
        }
    }

    /// A dial failed: dialing -> backing off (unless another connection came up meanwhile).
    pub(crate) fn dial_failed(&mut self) {
        if matches!(self, Self::Dialing) {
            *self = Self::BackingOff;
        }
    }

    /// The lower-id side decides whether a new connection becomes the pair's connection.
    /// Our own dial is accepted unless a connection is already up; an inbound connection is
    /// refused while we are dialing or connected, so at most one connection is ever accepted.
    pub(crate) fn decide(&mut self, generation: u64, kill: &K, our_dial: bool) -> bool {
        let accept = match self {
            Self::Up { .. } => false,
            Self::Dialing => our_dial,
            Self::Idle | Self::BackingOff => true,
        };
        if accept {
            *self = Self::Up {
                generation,
                kill: kill.clone(),
            };
        }
        accept
    }

    /// The higher-id side installs a connection the lower side accepted and returns the
    /// connection it replaces, which the caller must close (the lower side only accepts a new
    /// connection once it considers the old one gone).
    pub(crate) fn install(&mut self, generation: u64, kill: &K) -> Option<K> {
        let old = std::mem::replace(
            self,
            Self::Up {
                generation,
                kill: kill.clone(),
            },
        );
        match old {
            Self::Up { kill, .. } => Some(kill),
            Self::Idle | Self::BackingOff | Self::Dialing => None,
        }
    }

    /// Connection `generation` ended. True if it was the link's connection (the link is then
    /// down: backing off if the peer can be dialed, idle otherwise).
    pub(crate) fn down(&mut self, generation: u64, dialable: bool) -> bool {
        if !matches!(self, Self::Up { generation: g, .. } if *g == generation) {
            return false;
        }
        *self = if dialable {
            Self::BackingOff
        } else {
            Self::Idle
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = Link<u32>;

    #[test]
    fn a_dial_starts_only_from_rest() {
        let mut l = L::Idle;
        assert!(l.try_begin_dial());
        assert!(!l.try_begin_dial(), "already dialing");
        l.dial_failed();
        assert_eq!(l, L::BackingOff);
        assert!(l.try_begin_dial());
        assert!(l.decide(1, &10, true));
        assert!(!l.try_begin_dial(), "connected");
        l.dial_failed();
        assert_eq!(
            l.state(),
            ConnectionState::Connected,
            "a late failure changes nothing"
        );
    }

    #[test]
    fn the_lower_side_accepts_one_connection_and_its_own_dial_wins() {
        let mut l = L::Dialing;
        assert!(!l.decide(1, &10, false), "inbound refused while we dial");
        assert!(l.decide(2, &20, true), "our dial wins");
        assert!(
            !l.decide(3, &30, true),
            "nothing replaces a live connection"
        );
        assert_eq!(
            l,
            L::Up {
                generation: 2,
                kill: 20
            }
        );
        let mut idle = L::Idle;
        assert!(idle.decide(4, &40, false), "inbound accepted at rest");
    }

    #[test]
    fn the_higher_side_installs_and_closes_the_replaced_connection() {
        let mut l = L::Dialing;
        assert_eq!(l.install(1, &10), None);
        assert_eq!(l.install(2, &20), Some(10));
        assert_eq!(
            l,
            L::Up {
                generation: 2,
                kill: 20
            }
        );
    }

    #[test]
    fn only_the_current_connection_takes_the_link_down() {
        let mut l = L::Up {
            generation: 5,
            kill: 50,
        };
        assert!(!l.down(4, true), "an old connection ending changes nothing");
        assert_eq!(l.state(), ConnectionState::Connected);
        assert!(l.down(5, true));
        assert_eq!(l, L::BackingOff);
        let mut l = L::Up {
            generation: 6,
            kill: 60,
        };
        assert!(l.down(6, false));
        assert_eq!(l, L::Idle, "a peer we cannot dial waits for it to dial us");
        l.become_dialable();
        assert_eq!(l, L::BackingOff);
    }
}
