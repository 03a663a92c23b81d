//! base64 as the standards here use it: url-safe without padding out (JWS, keys), and any
//! of the four usual alphabets in (sealed values come from libsodium, Python, browsers).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::TrustError;

/// base64url without padding (RFC 7515 §2).
pub fn url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode standard or url-safe base64, padded or not; `what` names the value in the error.
pub fn decode_any(text: &str, what: &str) -> Result<Vec<u8>, TrustError> {
    let text = text.trim();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| TrustError::Base64 {
            what: what.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_alphabet_decodes_and_junk_does_not() {
        let bytes = [0xfb, 0xff, 0x01];
        for text in ["+/8B", "-_8B", "+/8B\n"] {
            assert_eq!(super::decode_any(text, "x").unwrap(), bytes);
        }
        assert_eq!(super::url(&bytes), "-_8B");
        assert!(super::decode_any("not base64!", "x").is_err());
    }
}
