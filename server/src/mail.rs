//! Sending email over SMTP with lettre. Mail is never sent from a request: job
//! handlers send it, so sign-ups never wait on SMTP and a mail server outage
//! loses nothing (the job is retried).

use crate::jobs::Failure;
use basalt_core::config::SmtpConfig;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// One email, rendered.
#[derive(Debug)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: Mailbox,
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Mailer> {
        let builder = match config.tls.as_str() {
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)?,
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)?,
        };
        let mut builder = builder
            .port(config.port as u16)
            .timeout(Some(Duration::from_secs(config.timeout_secs)));
        if !config.user.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.user.clone(),
                config.password.expose().to_owned(),
            ));
        }
        let sender = config
            .sender
            .parse()
            .map_err(|error| anyhow::anyhow!("invalid setting `smtp.sender`: {error}"))?;
        Ok(Mailer {
            transport: builder.build(),
            sender,
        })
    }

    /// Sends one email. A refused recipient or message (SMTP 5xx) is a
    /// permanent failure; anything else may pass on a later attempt.
    pub async fn send(&self, email: Email) -> Result<(), Failure> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| Failure::Permanent(format!("bad recipient: {e}")))?;
        let message = Message::builder()
            .from(self.sender.clone())
            .to(to)
            .subject(email.subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(email.text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(email.html),
                    ),
            )
            .map_err(|e| Failure::Permanent(format!("cannot build the message: {e}")))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                Failure::Permanent(format!("SMTP refused: {e}"))
            } else {
                Failure::Retry(format!("SMTP: {e}"))
            }
        })
    }
}
