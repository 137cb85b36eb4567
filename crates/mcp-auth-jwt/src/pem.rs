//! Public keys from PEM, read without an ASN.1 library.
//!
//! Only what a verifying server needs: `PUBLIC KEY` (SubjectPublicKeyInfo,
//! RFC 5280 §4.1.2.7), `RSA PUBLIC KEY` (PKCS#1) and the public key of a
//! `CERTIFICATE`. The key types are RSA, EC P-256 / P-384 and Ed25519; the
//! EC curve is read from the key, so a P-256 key verifies ES256 only.

use base64::Engine;

/// A public key in the form jsonwebtoken's `from_*_der` constructors take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// A PKCS#1 `RSAPublicKey`.
    Rsa(Vec<u8>),
    /// An uncompressed P-256 point.
    P256(Vec<u8>),
    /// An uncompressed P-384 point.
    P384(Vec<u8>),
    /// The 32 bytes of an Ed25519 key.
    Ed25519(Vec<u8>),
}

/// Why PEM text was refused. Never carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PemProblem {
    /// A private key where a public one belongs.
    Private,
    /// Not PEM, or not a supported public key.
    Unsupported,
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const OBJECT_ID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;

/// Reads the first PEM block of `text` as a public key.
pub(crate) fn public_key(text: &str) -> Result<PublicKey, PemProblem> {
    let (label, der) = first_block(text)?;
    match label {
        "PUBLIC KEY" => spki(&der),
        "RSA PUBLIC KEY" => {
            // Check it is one well-formed SEQUENCE before handing it on.
            let (tag, _, rest) = tlv(&der).ok_or(PemProblem::Unsupported)?;
            if tag != SEQUENCE || !rest.is_empty() {
                return Err(PemProblem::Unsupported);
            }
            Ok(PublicKey::Rsa(der))
        }
        "CERTIFICATE" => certificate(&der),
        l if l.contains("PRIVATE KEY") => Err(PemProblem::Private),
        _ => Err(PemProblem::Unsupported),
    }
}

/// The label and decoded body of the first `-----BEGIN ...-----` block.
fn first_block(text: &str) -> Result<(&str, Vec<u8>), PemProblem> {
    if text.contains("PRIVATE KEY-----") {
        // Also catches a private key placed after a public one.
        return Err(PemProblem::Private);
    }
    let start = text.find("-----BEGIN ").ok_or(PemProblem::Unsupported)?;
    let after = &text[start + "-----BEGIN ".len()..];
    let label_end = after.find("-----").ok_or(PemProblem::Unsupported)?;
    let label = &after[..label_end];
    let body = &after[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body.find(&end_marker).ok_or(PemProblem::Unsupported)?;
    let b64: String = body[..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| PemProblem::Unsupported)?;
    Ok((label, der))
}

/// One DER element: tag, contents, what follows. `None` when malformed
/// (indefinite or oversized lengths included).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, tail) = rest.split_at(len);
    Some((tag, contents, tail))
}

/// The contents of an element with the expected tag, and what follows.
fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), PemProblem> {
    match tlv(input) {
        Some((tag, contents, rest)) if tag == want => Ok((contents, rest)),
        _ => Err(PemProblem::Unsupported),
    }
}

/// A SubjectPublicKeyInfo: `SEQUENCE { SEQUENCE { OID, params }, BIT STRING }`.
fn spki(der: &[u8]) -> Result<PublicKey, PemProblem> {
    let (info, trailing) = expect(der, SEQUENCE)?;
    if !trailing.is_empty() {
        return Err(PemProblem::Unsupported);
    }
    let (alg, rest) = expect(info, SEQUENCE)?;
    let (bits, rest) = expect(rest, BIT_STRING)?;
    if !rest.is_empty() {
        return Err(PemProblem::Unsupported);
    }
    // The first byte counts unused bits; a key is whole bytes.
    let key = match bits.split_first() {
        Some((0, key)) if !key.is_empty() => key.to_vec(),
        _ => return Err(PemProblem::Unsupported),
    };
    let (oid, params) = expect(alg, OBJECT_ID)?;
    match oid {
        OID_RSA => Ok(PublicKey::Rsa(key)),
        OID_ED25519 if key.len() == 32 => Ok(PublicKey::Ed25519(key)),
        OID_EC => match expect(params, OBJECT_ID)? {
            (OID_P256, []) if key.len() == 65 => Ok(PublicKey::P256(key)),
            (OID_P384, []) if key.len() == 97 => Ok(PublicKey::P384(key)),
            _ => Err(PemProblem::Unsupported),
        },
        _ => Err(PemProblem::Unsupported),
    }
}

/// The SubjectPublicKeyInfo of an X.509 certificate (its validity, issuer
/// and signature are not checked: the certificate is only a key container).
fn certificate(der: &[u8]) -> Result<PublicKey, PemProblem> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    // Optional `[0] EXPLICIT version`.
    if let Some((0xa0, _, rest)) = tlv(tbs) {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        let (_, _, rest) = tlv(tbs).ok_or(PemProblem::Unsupported)?;
        tbs = rest;
    }
    let (tag, _, rest) = tlv(tbs).ok_or(PemProblem::Unsupported)?;
    if tag != SEQUENCE {
        return Err(PemProblem::Unsupported);
    }
    spki(&tbs[..tbs.len() - rest.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(der: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            b64(der)
        )
    }

    fn spki_der(oid: &[u8], params: &[u8], key: &[u8]) -> Vec<u8> {
        let mut alg = vec![OBJECT_ID, oid.len() as u8];
        alg.extend_from_slice(oid);
        alg.extend_from_slice(params);
        let mut inner = vec![SEQUENCE, alg.len() as u8];
        inner.extend(alg);
        inner.extend([BIT_STRING, (key.len() + 1) as u8, 0]);
        inner.extend_from_slice(key);
        let mut out = vec![SEQUENCE, inner.len() as u8];
        out.extend(inner);
        out
    }

    #[test]
    fn ed25519_and_ec_curves_are_read_from_the_key() {
        let ed = spki_der(OID_ED25519, &[], &[7; 32]);
        assert_eq!(
            public_key(&pem("PUBLIC KEY", &ed)),
            Ok(PublicKey::Ed25519(vec![7; 32]))
        );
        let mut p256 = vec![OBJECT_ID, OID_P256.len() as u8];
        p256.extend_from_slice(OID_P256);
        let point = [4u8; 65];
        assert_eq!(
            public_key(&pem("PUBLIC KEY", &spki_der(OID_EC, &p256, &point))),
            Ok(PublicKey::P256(point.to_vec()))
        );
        // A P-256 OID with a P-384-sized point is refused.
        assert_eq!(
            public_key(&pem("PUBLIC KEY", &spki_der(OID_EC, &p256, &[4; 97]))),
            Err(PemProblem::Unsupported)
        );
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        let ed = spki_der(OID_ED25519, &[], &[7; 32]);
        for cut in 0..ed.len() {
            assert!(public_key(&pem("PUBLIC KEY", &ed[..cut])).is_err(), "{cut}");
            assert!(
                public_key(&pem("CERTIFICATE", &ed[..cut])).is_err(),
                "{cut}"
            );
        }
        assert_eq!(public_key("hello"), Err(PemProblem::Unsupported));
        assert_eq!(
            public_key("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----"),
            Err(PemProblem::Unsupported)
        );
        // Indefinite and oversized lengths.
        assert_eq!(tlv(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(tlv(&[0x30, 0x84, 1, 0, 0, 0]), None);
        assert_eq!(tlv(&[0x30, 0x82, 0xff, 0xff, 0]), None);
    }

    #[test]
    fn private_keys_are_named_as_such() {
        for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"] {
            assert_eq!(
                public_key(&pem(label, &[1, 2, 3])),
                Err(PemProblem::Private)
            );
        }
        let both = format!(
            "{}{}",
            pem("PUBLIC KEY", &spki_der(OID_ED25519, &[], &[7; 32])),
            pem("PRIVATE KEY", &[1])
        );
        assert_eq!(public_key(&both), Err(PemProblem::Private));
    }
}
