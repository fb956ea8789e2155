//! A model of the lease and fencing protocol (filled in below).
