//! `rustlive publish` (below).
