//! Certificates, with `spec.tls`: the one the Secret holds now (the first certificate of
//! `tls.crt`) and the one each member presents in a TLS handshake. They differ after the
//! Secret was renewed in place until the member re-reads its files (`plan::certs`): the
//! member's answer is the truth, not the mounted files, which Redis reads only at start and on
//! `CONFIG SET tls-cert-file`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::CertificateDer;
use x509_cert::Certificate;
use x509_cert::der::Decode;

use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::addr_of;
use crate::redis::tls::TlsOptions;

/// One handshake per member per pass: the same bound as the admin connection's connect.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// What identifies a certificate and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the DER encoding, lowercase hex (`openssl x509 -fingerprint -sha256`
    /// without the colons): what tells two certificates apart.
    pub fingerprint: String,
    /// The serial number, lowercase hex: what a human finds in the issuer's records.
    pub serial: String,
    /// The end of its validity.
    pub not_after: jiff::Timestamp,
}

impl CertInfo {
    /// Parses one DER certificate.
    ///
    /// # Errors
    /// A sentence saying why the bytes are no usable X.509 certificate.
    pub fn of_der(der: &[u8]) -> Result<Self, String> {
        let cert =
            Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let tbs = &cert.tbs_certificate;
        let serial = tbs
            .serial_number
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let unix = tbs.validity.not_after.to_unix_duration();
        let not_after = i64::try_from(unix.as_secs())
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .ok_or_else(|| format!("notAfter out of range: {unix:?}"))?;
        Ok(Self {
            fingerprint: fingerprint(der),
            serial,
            not_after,
        })
    }

    /// The first 16 hex digits of the fingerprint, for messages.
    pub fn short(&self) -> &str {
        self.fingerprint.get(..16).unwrap_or(&self.fingerprint)
    }
}

/// SHA-256 of `der`, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The certificates as observed in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certs {
    /// The Secret's end-entity certificate, when the cluster has usable TLS settings and the
    /// certificate parses.
    pub secret: Option<CertInfo>,
    /// What each member presented, by Pod name; members that did not complete a handshake
    /// within the timeout are absent (they are judged by the Redis observation).
    pub presented: BTreeMap<String, CertInfo>,
}

/// The Secret's leaf certificate (the client certificate the operator presents is the
/// Secret's `tls.crt`) and what every member with an IP presents, the handshakes run
/// concurrently, each bounded by [`HANDSHAKE_TIMEOUT`] or by its address's entry in `limits`
/// (a member whose connect timed out last pass, [`super::connects`]: run side by side with the
/// Redis observation, a full wait here would undo the shorter one there).
pub async fn observe(
    members: &[Member],
    tls: Option<&TlsOptions>,
    limits: &BTreeMap<SocketAddr, Duration>,
) -> Certs {
    let Some(tls) = tls else {
        return Certs::default();
    };
    let secret = tls
        .client_leaf()
        .and_then(|der| match CertInfo::of_der(der) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(error = %e, "the TLS Secret's tls.crt does not parse");
                None
            }
        });
    let handshakes = members
        .iter()
        .filter(|m| !m.finished())
        .filter_map(|m| Some((m.name().to_string(), addr_of(m)?)))
        .map(|(pod, addr)| async move {
            let limit = limits.get(&addr).copied().unwrap_or(HANDSHAKE_TIMEOUT);
            match tls.peer_certificate(addr, limit).await {
                Ok(der) => presented(pod, &der),
                Err(e) => {
                    tracing::debug!(%pod, error = %e, "no certificate observed");
                    None
                }
            }
        });
    let presented = futures::future::join_all(handshakes)
        .await
        .into_iter()
        .flatten()
        .collect();
    Certs { secret, presented }
}

fn presented(pod: String, der: &CertificateDer<'_>) -> Option<(String, CertInfo)> {
    match CertInfo::of_der(der) {
        Ok(info) => Some((pod, info)),
        Err(e) => {
            tracing::debug!(%pod, error = %e, "the presented certificate does not parse");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::pki_types::pem::PemObject;

    /// A certificate made once with `openssl req -x509 -newkey ec -pkeyopt
    /// ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=fixture -set_serial 0x1234abcd`;
    /// `openssl x509 -noout -enddate -fingerprint -sha256` gives the values asserted below.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBaTCCAQ+gAwIBAgIEEjSrzTAKBggqhkjOPQQDAjASMRAwDgYDVQQDDAdmaXh0
dXJlMB4XDTI2MTIwNTEyMTUyNVoXDTM2MTIwMjEyMTUyNVowEjEQMA4GA1UEAwwH
Zml4dHVyZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABFtQEt0Q5cgZWvvjSwCI
SqMbR2P0sXazkh1q4EXsSm+fyhIY9atjRyyi7PYX/MXDS3Wpc16Q1i0WbYc68zSq
yJSjUzBRMB0GA1UdDgQWBBT4UOgVnlPDFx/6g0HpODAkrPQbYTAfBgNVHSMEGDAW
gBT4UOgVnlPDFx/6g0HpODAkrPQbYTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIFbt4H2+j2+87qgH85t1rgdKN2YA55MmX/DWZW7oejlIAiEA6U9W
AJPXo++pWuLhDQTvANhVcj/qc/fMNygIjQ1yKco=
-----END CERTIFICATE-----
";

    #[test]
    fn not_after_serial_and_fingerprint_of_a_certificate() {
        let der = CertificateDer::from_pem_slice(PEM.as_bytes()).unwrap();
        let info = CertInfo::of_der(&der).unwrap();
        assert_eq!(info.serial, "1234abcd");
        assert_eq!(
            info.not_after,
            "2036-12-02T12:15:25Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(
            info.fingerprint,
            "d46d76405d3b944740a06d648af4fe45f8f58155bdaec4a43bc7e5d1ab58546f"
        );
        assert_eq!(info.short(), &info.fingerprint[..16]);
    }

    #[test]
    fn bytes_that_are_no_certificate_are_refused() {
        for bad in [&b""[..], b"hello", &[0x30, 0x03, 0x02, 0x01, 0x01]] {
            let err = CertInfo::of_der(bad).unwrap_err();
            assert!(err.starts_with("not an X.509 certificate"), "{err}");
        }
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2's test vector.
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
