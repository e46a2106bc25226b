//! Walrus's typed errors. The seed API returns `std::io::Result`, so every [`Error`] travels
//! inside an `io::Error` (with a matching `ErrorKind`); [`Error::of`] gets it back, so a caller
//! can tell a failed instance from a deleted topic or a full disk without reading messages.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// A write or fsync failed: what is in memory may not be on disk, so the instance refuses
    /// every further write and flush until it is reopened (recovery then says what survived).
    Poisoned { root: String, reason: String },
    /// Stored bytes fail their checksum or framing.
    Corrupt {
        topic: String,
        position: u64,
        what: &'static str,
    },
    /// The topic was deleted while the caller held it.
    Deleted { topic: String },
    /// A `batch_append` to the topic is in flight; single appends must wait for it.
    BatchInFlight { topic: String },
    /// An argument outside the API's limits.
    Invalid(String),
}

impl Error {
    /// The Walrus error carried by `e`, if it carries one.
    pub fn of(e: &io::Error) -> Option<&Error> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    }

    /// Whether `e` says the instance is failed (see [`Error::Poisoned`]).
    pub fn is_poisoned(e: &io::Error) -> bool {
        matches!(Error::of(e), Some(Error::Poisoned { .. }))
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Poisoned { .. } => io::ErrorKind::Other,
            Error::Corrupt { .. } => io::ErrorKind::InvalidData,
            Error::Deleted { .. } => io::ErrorKind::NotFound,
            Error::BatchInFlight { .. } => io::ErrorKind::WouldBlock,
            Error::Invalid(_) => io::ErrorKind::InvalidInput,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Poisoned { root, reason } => {
                write!(
                    f,
                    "walrus instance at {root} is failed ({reason}); reopen it"
                )
            }
            Error::Corrupt {
                topic,
                position,
                what,
            } => write!(
                f,
                "topic {topic}: corrupt entry at position {position} ({what})"
            ),
            Error::Deleted { topic } => write!(f, "topic {topic} was deleted"),
            Error::BatchInFlight { topic } => {
                write!(f, "a batch append is in flight for topic {topic}")
            }
            Error::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_survives_the_trip_through_io_error() {
        let e: io::Error = Error::Deleted { topic: "t".into() }.into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(matches!(Error::of(&e), Some(Error::Deleted { topic }) if topic == "t"));
        assert_eq!(e.to_string(), "topic t was deleted");
        let p: io::Error = Error::Poisoned {
            root: "/d".into(),
            reason: "fsync failed: EIO".into(),
        }
        .into();
        assert!(Error::is_poisoned(&p));
        assert!(!Error::is_poisoned(&e));
        assert!(Error::of(&io::Error::other("plain")).is_none());
    }
}
