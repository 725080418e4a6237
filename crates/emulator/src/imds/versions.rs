//! The API versions IMDS accepts (azure-wire.md §1.6), newest first.

pub const SUPPORTED: &[&str] = &[
    "2025-04-07",
    "2024-07-17",
    "2024-03-15",
    "2023-11-15",
    "2023-07-01",
    "2021-12-13",
    "2021-11-15",
    "2021-11-01",
    "2021-10-01",
    "2021-08-01",
    "2021-05-01",
    "2021-03-01",
    "2021-02-01",
    "2021-01-01",
    "2020-12-01",
    "2020-10-01",
    "2020-09-01",
    "2020-07-15",
    "2020-06-01",
    "2019-11-01",
    "2019-08-15",
    "2019-08-01",
    "2019-06-04",
    "2019-06-01",
    "2019-04-30",
    "2019-03-11",
    "2019-02-01",
    "2018-10-01",
    "2018-04-02",
    "2018-02-01",
    "2017-12-01",
    "2017-10-01",
    "2017-08-01",
    "2017-04-02",
    "2017-03-01",
];

/// The identity endpoints exist since this version.
pub const IDENTITY_SINCE: &str = "2018-02-01";

/// Whether `/metadata/instance` accepts `version`.
pub fn instance_supports(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// Whether the identity endpoints accept `version` (ISO dates compare as strings).
pub fn identity_supports(version: &str) -> bool {
    instance_supports(version) && version >= IDENTITY_SINCE
}

/// The three newest versions, listed in the "api-version is invalid" error body.
pub fn newest() -> &'static [&'static str] {
    &SUPPORTED[..3]
}

/// Every version, oldest first, as `/metadata/versions` lists them.
pub fn oldest_first() -> Vec<&'static str> {
    SUPPORTED.iter().rev().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_endpoint_needs_2018_02_01_or_later() {
        assert!(identity_supports("2018-02-01"));
        assert!(identity_supports("2019-08-01"));
        assert!(!identity_supports("2017-12-01"));
        assert!(instance_supports("2017-12-01"));
        assert!(!identity_supports("2018-02-02"));
        assert!(!identity_supports(""));
    }

    #[test]
    fn the_list_is_sorted_newest_first_without_duplicates() {
        assert!(SUPPORTED.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(newest(), ["2025-04-07", "2024-07-17", "2024-03-15"]);
        assert_eq!(oldest_first().first(), Some(&"2017-03-01"));
    }
}
