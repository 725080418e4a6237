//! Fresh object names, so tests sharing one control plane never collide.

use rand::Rng;

/// Longest DNS-1123 label (namespace and node names).
const MAX_LABEL: usize = 63;

/// `prefix` made DNS-1123-safe, then `-` and eight random hex digits.
pub fn unique_name(prefix: &str) -> String {
    let suffix: u32 = rand::rng().random();
    with_suffix(prefix, &format!("{suffix:08x}"))
}

fn with_suffix(prefix: &str, suffix: &str) -> String {
    let cleaned: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let room = MAX_LABEL - suffix.len() - 1;
    let stem: String = cleaned.chars().take(room).collect();
    let stem = stem.trim_matches('-');
    if stem.is_empty() {
        format!("t-{suffix}")
    } else {
        format!("{stem}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is_dns1123_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_LABEL
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn keeps_a_readable_prefix() {
        assert_eq!(with_suffix("Seed_Apply", "0000abcd"), "seed-apply-0000abcd");
        assert_eq!(with_suffix("--", "0000abcd"), "t-0000abcd");
    }

    #[test]
    fn two_calls_differ() {
        assert_ne!(unique_name("x"), unique_name("x"));
    }

    proptest! {
        #[test]
        fn always_a_dns1123_label(prefix in ".{0,100}") {
            let name = unique_name(&prefix);
            prop_assert!(is_dns1123_label(&name), "{name:?}");
        }
    }
}
