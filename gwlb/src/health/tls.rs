//! The TLS of HTTPS health checks: rustls client configurations (one per distinct setting,
//! shared by every probe that uses it) and the non-blocking exchange of one probe.
//!
//! Certificate verification is off by default, as AWS does not verify the certificates of
//! its HTTPS health checks: the handshake's signatures are still checked (the appliance must
//! hold the key of the certificate it sends), the chain and the name are not. With
//! `tls_verify = true` the chain must lead to a CA of `tls_ca_file` (the system's bundle
//! without one) and the certificate must carry `tls_server_name`, or the target's address.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use socket2::Socket;

use crate::config::TlsCheck;

/// What one read or write turn of [`drive`] came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// Waiting for the socket: readable, or writable when [`ClientConnection::wants_write`].
    Pending,
    /// The peer closed the connection (cleanly or not) after this many plaintext bytes.
    Closed,
    /// `received` holds a line (or the most that is read).
    Line,
    /// The TLS exchange failed.
    Failed(String),
}

/// Runs the TLS connection `conn` over `socket` as far as it goes without blocking: sends
/// the pending records (the handshake, then the request already written to `conn`), reads
/// the server's and appends its plaintext to `received`, up to `max` bytes.
pub(super) fn drive(
    conn: &mut ClientConnection,
    socket: &Socket,
    received: &mut Vec<u8>,
    max: usize,
) -> Progress {
    let mut s = socket;
    loop {
        while conn.wants_write() {
            match conn.write_tls(&mut s) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Progress::Failed(format!("TLS: sending: {e}")),
            }
        }
        let eof = match conn.read_tls(&mut s) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Progress::Failed(format!("TLS: receiving: {e}")),
        };
        if let Err(e) = conn.process_new_packets() {
            // Tell the server why (an alert), if it still listens.
            let _ = conn.write_tls(&mut s);
            return Progress::Failed(format!("TLS: {e}"));
        }
        let mut chunk = [0u8; 512];
        loop {
            let room = max.saturating_sub(received.len()).min(chunk.len());
            if room == 0 {
                return Progress::Line;
            }
            match conn.reader().read(&mut chunk[..room]) {
                Ok(0) => return Progress::Closed,
                Ok(n) => {
                    received.extend_from_slice(&chunk[..n]);
                    if received.contains(&b'\n') {
                        return Progress::Line;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Closed without close_notify: what was read is all there is.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Progress::Closed,
                Err(e) => return Progress::Failed(format!("TLS: {e}")),
            }
        }
        if eof {
            return if conn.is_handshaking() {
                Progress::Failed("TLS: connection closed during the handshake".into())
            } else {
                Progress::Closed
            };
        }
    }
}

/// The client configurations of HTTPS checks, built on first use and kept (a CA file is
/// read once, not per probe; a changed setting is a new key).
#[derive(Debug, Default)]
pub(super) struct Configs {
    built: HashMap<(bool, Option<PathBuf>), Arc<ClientConfig>>,
}

impl Configs {
    /// A connection for a probe of `target` with `tls`, the HTTP request already written
    /// into it; `Err` with the reason when the configuration cannot be built (a CA file
    /// gone since it was validated: the gateway's problem, not the target's).
    pub(super) fn connect(
        &mut self,
        tls: &TlsCheck,
        target: IpAddr,
        request: &[u8],
    ) -> Result<ClientConnection, String> {
        let key = (tls.verify, tls.ca_file.clone());
        let config = match self.built.get(&key) {
            Some(c) => Arc::clone(c),
            None => {
                let c = Arc::new(client_config(tls)?);
                self.built.insert(key, Arc::clone(&c));
                c
            }
        };
        let name = match &tls.server_name {
            Some(n) => {
                ServerName::try_from(n.clone()).map_err(|e| format!("TLS server name: {e}"))?
            }
            None => ServerName::IpAddress(target.into()),
        };
        let mut conn = ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        io::Write::write_all(&mut conn.writer(), request).map_err(|e| format!("TLS: {e}"))?;
        Ok(conn)
    }
}

fn client_config(tls: &TlsCheck) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    if !tls.verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let path = tls
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(TlsCheck::SYSTEM_CA_FILE));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("TLS CA file {}: {e:?}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("TLS CA file {}: {e:?}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("TLS CA file {}: {e}", path.display()))?;
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `tls_verify = false`: any certificate chain and name, but the handshake's signatures are
/// checked with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
