//! Defaults of config keys, written where the key is declared:
//! `#[serde(default = "config_default::u64::<250>")]` instead of a `fn default_x() -> u64 { 250 }`
//! per key. (Floats and strings cannot be const parameters; those keep a function of their own.)

/// `N`, for a `u64` key.
pub const fn u64<const N: u64>() -> u64 {
    N
}

/// `N`, for a `usize` key.
pub const fn usize<const N: usize>() -> usize {
    N
}

/// `true`, for a switch that is on unless turned off.
pub const fn yes() -> bool {
    true
}
