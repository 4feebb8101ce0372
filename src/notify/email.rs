//! Mail over SMTP (lettre): STARTTLS, implicit TLS or plain, optional AUTH, a text and an
//! HTML part. SMTP replies map onto outbox outcomes: 4xx and connection problems are
//! retried, 5xx (a refused recipient, bad credentials) is not.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::SmtpTls;
use super::outbox::Outcome;
use super::render::Mail;

/// Why a mail channel cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("channel {channel}: {message}")]
    Setup { channel: String, message: String },
}

/// One mail channel, ready to send.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// Settings of [`EmailSender::new`].
pub struct EmailSettings<'a> {
    pub channel: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub ca_pem: Option<Vec<u8>>,
    pub credentials: Option<(String, String)>,
    pub from: &'a str,
    pub to: &'a [String],
    pub timeout: Duration,
}

impl EmailSender {
    pub fn new(s: EmailSettings<'_>) -> Result<EmailSender, EmailError> {
        let err = |message: String| EmailError::Setup {
            channel: s.channel.to_string(),
            message,
        };
        let params = || -> Result<TlsParameters, EmailError> {
            let mut b = TlsParameters::builder(s.host.to_string());
            if let Some(pem) = &s.ca_pem {
                let cert = Certificate::from_pem(pem)
                    .map_err(|e| err(format!("ca_file is not a PEM certificate: {e}")))?;
                b = b.add_root_certificate(cert);
            }
            b.build_native()
                .map_err(|e| err(format!("TLS setup failed: {e}")))
        };
        let (tls, default_port) = match s.tls {
            SmtpTls::Starttls => (Tls::Required(params()?), 587),
            SmtpTls::Tls => (Tls::Wrapper(params()?), 465),
            SmtpTls::None => (Tls::None, 25),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host)
            .port(s.port.unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(s.timeout));
        if let Some((u, p)) = s.credentials {
            b = b.credentials(Credentials::new(u, p));
        }
        let from = s
            .from
            .parse()
            .map_err(|e| err(format!("from {:?}: {e}", s.from)))?;
        let to =
            s.to.iter()
                .map(|t| t.parse().map_err(|e| err(format!("to {t:?}: {e}"))))
                .collect::<Result<Vec<Mailbox>, _>>()?;
        Ok(EmailSender {
            transport: b.build(),
            from,
            to,
        })
    }

    /// Sends one mail; `id` becomes its `Message-ID`.
    pub async fn send(&self, id: &str, mail: &Mail) -> Outcome {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{id}@driftwatch>")));
        for t in &self.to {
            m = m.to(t.clone());
        }
        let msg = match m.multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        )) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::Permanent {
                    reason: format!("cannot build the mail: {e}"),
                }
            }
        };
        match self.transport.send(msg).await {
            Ok(_) => Outcome::Delivered,
            Err(e) if e.is_permanent() => Outcome::Permanent {
                reason: format!("SMTP: {e}"),
            },
            Err(e) => Outcome::Retry {
                reason: format!("SMTP: {e}"),
                after: None,
            },
        }
    }
}
