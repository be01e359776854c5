//! BitTorrent for the image: the `.torrent` file ([`metainfo`] on [`bencode`]), the peer wire
//! protocol ([`wire`]), HTTP trackers ([`tracker`]), which piece next from whom ([`picker`]),
//! and the download that drives them ([`session`]: peers from the tracker and from peer
//! exchange, pieces from peers and from web seeds, each verified against its SHA-1 before it is
//! written or shared, then the whole file verified as `fetch` verifies it).
//!
//! `session::seed_file` serves a file already complete and verified (the seeder after
//! switch-root), through the same serving loop as a download's seeding time.
//!
//! Layering inside `swarm`: `bencode`, `wire`, `tracker`, `metainfo`, `picker`, `choke` (upload
//! slots) and `rate` (the upload cap's token bucket) are pure and
//! use nothing but each other downwards (`metainfo` and `wire` use `bencode`, `tracker` uses
//! `wire`); `shared` holds what the threads share; `peer` (one connection) and `webseed`
//! (ranged GETs) are the effects on it, driven by `session`. Everything here handles bytes from the network: no unwrap, expect, panic,
//! indexing or unchecked arithmetic outside tests.

pub mod bencode;
pub mod choke;
pub mod metainfo;
pub mod peer;
pub mod picker;
pub mod rate;
pub mod seeder;
pub mod session;
pub mod shared;
pub mod tracker;
pub mod webseed;
pub mod wire;
