//! Rules for POSIX shared-memory object names.

use crate::Error;

/// Longest accepted name, in bytes including the leading `/` (NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;

/// Check `name` against the rules `shm_open` names must follow to be
/// portable and to stay inside `/dev/shm`: one leading `/`, no other `/`, at
/// most 255 bytes, not `/.` or `/..`, no NUL.
///
/// ```
/// assert!(shmqueue::validate_name("/orders").is_ok());
/// assert!(shmqueue::validate_name("orders").is_err());
/// assert!(shmqueue::validate_name("/a/b").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), Error> {
    let bad = |rule| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            rule,
        })
    };
    let Some(rest) = name.strip_prefix('/') else {
        return bad("must start with '/'");
    };
    if rest.is_empty() {
        return bad("must have at least one byte after the leading '/'");
    }
    if rest.contains('/') {
        return bad("must not contain '/' after the leading one");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("must be at most 255 bytes long");
    }
    if rest == "." || rest == ".." {
        return bad("must not be '/.' or '/..'");
    }
    if rest.contains('\0') {
        return bad("must not contain a NUL byte");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str) -> &'static str {
        match validate_name(name) {
            Err(Error::InvalidName { rule, .. }) => rule,
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
    }

    #[test]
    fn every_rule_is_enforced_and_named() {
        assert!(rule("x").contains("start with '/'"));
        assert!(rule("").contains("start with '/'"));
        assert!(rule("/").contains("at least one byte"));
        assert!(rule("/a/b").contains("'/'"));
        assert!(rule("//").contains("'/'"));
        assert!(rule(&format!("/{}", "a".repeat(255))).contains("255"));
        assert!(rule("/.").contains("'/.'"));
        assert!(rule("/..").contains("'/..'"));
        assert!(rule("/a\0b").contains("NUL"));
    }

    #[test]
    fn valid_names_pass() {
        validate_name("/a").unwrap();
        validate_name("/...").unwrap();
        validate_name(&format!("/{}", "a".repeat(254))).unwrap();
        validate_name("/ünïcode-ok").unwrap();
    }
}
