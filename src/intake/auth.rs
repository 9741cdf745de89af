//! The bearer token Alertmanager must send, compared in constant time.

use std::path::Path;

use anyhow::Context as _;
use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

/// The expected token, kept only as its digest.
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    /// Reads the token from `path` (surrounding whitespace, such as a trailing newline, is not
    /// part of it); an empty file fails the start rather than accepting anyone.
    pub fn read(path: &Path) -> anyhow::Result<Token> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the intake token file {}", path.display()))?;
        Token::new(text.trim())
            .with_context(|| format!("the intake token file {} is empty", path.display()))
    }

    fn new(token: &str) -> Option<Token> {
        (!token.is_empty()).then(|| Token {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `Authorization: Bearer <token>` carries this token. Both sides are hashed first
    /// and the digests compared without an early exit, so timing says nothing about how much of
    /// a guess was right, nor about the token's length.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(value) = header.and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Some((scheme, candidate)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(candidate.trim().as_bytes()).into();
        digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn only_the_right_bearer_token_is_accepted() {
        let token = Token::new("s3cret-token").unwrap();
        assert!(token.accepts(Some(&header("Bearer s3cret-token"))));
        assert!(token.accepts(Some(&header("bearer s3cret-token"))));
        for wrong in [
            "Bearer s3cret-tokeN",
            "Bearer s3cret-token-and-more",
            "Bearer ",
            "Bearer",
            "Basic s3cret-token",
            "s3cret-token",
            "",
        ] {
            assert!(!token.accepts(Some(&header(wrong))), "{wrong:?}");
        }
        assert!(!token.accepts(None));
        let binary = HeaderValue::from_bytes(b"Bearer \xff").unwrap();
        assert!(!token.accepts(Some(&binary)));
    }

    #[test]
    fn an_empty_token_file_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " \n").unwrap();
        let err = Token::read(&path).err().unwrap();
        assert!(format!("{err:#}").contains("is empty"), "{err:#}");
        std::fs::write(&path, "t0ken\n").unwrap();
        assert!(
            Token::read(&path)
                .unwrap()
                .accepts(Some(&header("Bearer t0ken")))
        );
        assert!(Token::read(&dir.path().join("missing")).is_err());
    }
}
