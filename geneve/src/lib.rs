//! Geneve (RFC 8926) codec. Work in progress.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
