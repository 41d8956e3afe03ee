//! A real SMTP server (aiosmtpd) whose received messages tests read.

use super::*;

/// A real SMTP server (aiosmtpd, from Debian's python3-aiosmtpd) on a loopback
/// port, storing what it receives in a maildir. Stopped when dropped.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

/// One received email, decoded.
#[derive(Debug, Clone)]
pub struct ReceivedEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl ReceivedEmail {
    /// The first link to Basalt's verify endpoint in the text body.
    pub fn verify_link(&self) -> String {
        let start = self
            .text
            .find("http")
            .unwrap_or_else(|| panic!("no link in {self:?}"));
        self.text[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let server = SmtpServer {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("basalt-smtp-")
                .tempdir()
                .unwrap(),
            child: Mutex::new(None),
        };
        server.resume();
        server
    }

    fn python() -> &'static str {
        let system = "/usr/bin/python3";
        let has_module = |python: &str| {
            Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .output()
                .is_ok_and(|output| output.status.success())
        };
        if has_module(system) {
            system
        } else if has_module("python3") {
            "python3"
        } else {
            panic!("aiosmtpd is missing: apt-get install python3-aiosmtpd")
        }
    }

    pub fn resume(&self) {
        // aiosmtpd's maildir handler, refusing (550) recipients that contain
        // `+reject@`, so tests can see a permanent failure.
        let handler = [
            "from aiosmtpd.handlers import Mailbox",
            "class Handler(Mailbox):",
            "    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):",
            "        if '+reject@' in address:",
            "            return '550 5.1.1 no such user'",
            "        envelope.rcpt_tos.append(address)",
            "        return '250 OK'",
        ];
        std::fs::write(
            self.dir.path().join("basalt_test_smtp.py"),
            handler.join("\n") + "\n",
        )
        .unwrap();
        let mut command = Command::new(Self::python());
        command
            .env("PYTHONPATH", self.dir.path())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(["-c", "basalt_test_smtp.Handler"])
            .arg(self.dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        *self.child.lock().unwrap() = Some(spawn_owned(command).expect("aiosmtpd starts"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The settings that point Basalt at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BASALT_SMTP_HOST", "127.0.0.1".to_owned()),
            ("BASALT_SMTP_PORT", self.port.to_string()),
            ("BASALT_SMTP_TLS", "none".to_owned()),
            (
                "BASALT_SMTP_SENDER",
                "Basalt Test <no-reply@basalt.test>".to_owned(),
            ),
        ]
    }

    /// The maildir the server stores messages in (`new/` holds them), for
    /// scripts that read the emails themselves.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<ReceivedEmail> {
        let new = self.dir.path().join("mail/new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        files.sort_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|path| {
                let raw = std::fs::read(path).unwrap();
                let parsed = mailparse::parse_mail(&raw).unwrap();
                let header = |name: &str| {
                    mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), name)
                        .unwrap_or_default()
                };
                let part = |mime: &str| {
                    parsed
                        .subparts
                        .iter()
                        .find(|part| part.ctype.mimetype == mime)
                        .map(|part| part.get_body().unwrap())
                        .unwrap_or_default()
                };
                ReceivedEmail {
                    to: header("To"),
                    subject: header("Subject"),
                    text: part("text/plain"),
                    html: part("text/html"),
                }
            })
            .collect()
    }

    /// Waits for a message to `to` beyond the first `skip` ones sent to it.
    pub async fn wait_for(&self, to: &str, skip: usize, limit: Duration) -> ReceivedEmail {
        let deadline = Instant::now() + limit;
        loop {
            let mine: Vec<ReceivedEmail> = self
                .messages()
                .into_iter()
                .filter(|m| m.to.contains(to))
                .collect();
            if let Some(message) = mine.get(skip) {
                return message.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no email #{skip} to {to} arrived"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
