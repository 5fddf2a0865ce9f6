//! Mail client settings for a user: the IMAP host and ports, a Thunderbird
//! autoconfig file (`config-v1.1.xml` format), an Apple configuration profile
//! (`.mobileconfig`, an unsigned plist with one `com.apple.mail.managed`
//! payload and no password) and a QR code of the settings.
//!
//! Roost takes mail in over LMTP from the owner's MTA, which also sends; the
//! files name IMAP only and leave outgoing mail to that MTA's settings.

use roost_core::model::UserName;

use crate::config::Config;

/// What a mail client needs.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Login name.
    pub user: String,
    /// Host name the client connects to.
    pub host: String,
    /// IMAP over TLS port.
    pub imaps_port: Option<u16>,
    /// IMAP with STARTTLS port.
    pub imap_port: Option<u16>,
}

impl ClientSettings {
    /// Settings for `user` on `host` with the configured IMAP ports.
    pub fn new(user: &UserName, host: &str, config: &Config) -> ClientSettings {
        ClientSettings {
            user: user.to_string(),
            host: host.to_string(),
            imaps_port: config.imap.listen_tls.first().map(|a| a.port()),
            imap_port: config.imap.listen.first().map(|a| a.port()),
        }
    }

    /// The text of the QR code: an `imaps://` (or `imap://`) URL.
    pub fn qr_text(&self) -> String {
        match (self.imaps_port, self.imap_port) {
            (Some(port), _) => format!("imaps://{}@{}:{port}", self.user, self.host),
            (None, Some(port)) => format!("imap://{}@{}:{port}?starttls", self.user, self.host),
            (None, None) => format!("imap://{}@{}", self.user, self.host),
        }
    }

    /// Thunderbird autoconfig XML.
    pub fn autoconfig_xml(&self) -> String {
        let host = xml_escape(&self.host);
        let user = xml_escape(&self.user);
        let mut servers = String::new();
        if let Some(port) = self.imaps_port {
            servers.push_str(&imap_server(&host, port, "SSL", &user));
        }
        if let Some(port) = self.imap_port {
            servers.push_str(&imap_server(&host, port, "STARTTLS", &user));
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  \
             <emailProvider id=\"{host}\">\n    <domain>{host}</domain>\n    \
             <displayName>Roost on {host}</displayName>\n{servers}  </emailProvider>\n</clientConfig>\n"
        )
    }

    /// Apple configuration profile (plist XML). `uuid_seed` makes the
    /// payload identifiers stable per device and user.
    pub fn mobileconfig(&self, uuid_seed: &str) -> String {
        let host = xml_escape(&self.host);
        let user = xml_escape(&self.user);
        let (port, ssl) = match (self.imaps_port, self.imap_port) {
            (Some(port), _) => (port, "true"),
            (None, Some(port)) => (port, "false"),
            (None, None) => (993, "true"),
        };
        let uuid = |what: &str| {
            let hash = blake3::hash(format!("{uuid_seed}\0{}\0{what}", self.user).as_bytes()).to_hex();
            let h = hash.as_str();
            format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]).to_uppercase()
        };
        let (outer, inner) = (uuid("profile"), uuid("mail"));
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key><string>Roost ({user})</string>
      <key>EmailAccountType</key><string>EmailTypeIMAP</string>
      <key>EmailAddress</key><string>{user}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key><string>{host}</string>
      <key>IncomingMailServerPortNumber</key><integer>{port}</integer>
      <key>IncomingMailServerUseSSL</key><{ssl}/>
      <key>IncomingMailServerUsername</key><string>{user}</string>
      <key>PayloadIdentifier</key><string>org.roost.mail.{inner}</string>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadUUID</key><string>{inner}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDisplayName</key><string>Roost mail for {user}</string>
  <key>PayloadIdentifier</key><string>org.roost.profile.{outer}</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{outer}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
"#
        )
    }
}

fn imap_server(host: &str, port: u16, socket_type: &str, user: &str) -> String {
    format!(
        "    <incomingServer type=\"imap\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      \
         <socketType>{socket_type}</socketType>\n      <authentication>password-cleartext</authentication>\n      \
         <username>{user}</username>\n    </incomingServer>\n"
    )
}

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// Checks a host name taken from a request's `Host` header before it goes
/// into generated files: letters, digits, dots, hyphens, or an IP literal.
pub fn host_is_plausible(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// An SVG QR code of `text` (black on white, with the quiet zone).
pub fn qr_svg(text: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| anyhow::format_err!("cannot make a QR code: {e}"))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClientSettings {
        ClientSettings { user: "a&b".into(), host: "mail.example".into(), imaps_port: Some(993), imap_port: Some(143) }
    }

    // The generated files escape what they embed and name both IMAP ports.
    #[test]
    fn files_escape_and_name_ports() {
        let xml = settings().autoconfig_xml();
        assert!(xml.contains("<username>a&amp;b</username>"), "{xml}");
        assert!(xml.contains("<port>993</port>") && xml.contains("<socketType>SSL</socketType>"), "{xml}");
        assert!(xml.contains("<socketType>STARTTLS</socketType>"), "{xml}");
        let plist = settings().mobileconfig("dev");
        assert!(plist.contains("<integer>993</integer>") && plist.contains("<true/>"), "{plist}");
        assert_eq!(plist, settings().mobileconfig("dev"), "stable identifiers");
        assert_eq!(settings().qr_text(), "imaps://a&b@mail.example:993");
    }

    #[test]
    fn hosts_are_checked() {
        assert!(host_is_plausible("roost.local"));
        assert!(host_is_plausible("[::1]"));
        assert!(!host_is_plausible("a\"><script>"));
        assert!(!host_is_plausible(""));
    }

    #[test]
    fn qr_is_svg() {
        assert!(qr_svg("imaps://a@b:993").unwrap().starts_with("<?xml"));
    }
}
