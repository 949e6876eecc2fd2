//! Device and browser from a User-Agent header: enough for session metadata and drop-off
//! analysis (which browsers and devices struggle), not a full UA database.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub browser: &'static str,
    pub browser_version: Option<String>,
    pub os: &'static str,
    /// desktop | mobile | tablet
    pub device: &'static str,
}

/// Reads browser, OS and device class from a User-Agent string. Unknown parts are "other".
pub fn describe(ua: &str) -> ClientInfo {
    // Order matters: Edge and Opera say "Chrome", Chrome says "Safari", iOS browsers say "Safari".
    let browsers: [(&str, &'static str); 7] = [
        ("Edg/", "edge"),
        ("OPR/", "opera"),
        ("Firefox/", "firefox"),
        ("FxiOS/", "firefox"),
        ("CriOS/", "chrome"),
        ("Chrome/", "chrome"),
        ("Version/", "safari"),
    ];
    let (browser, browser_version) = browsers
        .iter()
        .find_map(|(token, name)| {
            ua.find(token).map(|at| {
                let version: String = ua[at + token.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                (*name, (!version.is_empty()).then_some(version))
            })
        })
        .unwrap_or(("other", None));
    let browser = if browser == "safari" && !ua.contains("Safari/") {
        "other"
    } else {
        browser
    };
    let os = if ua.contains("iPhone") || ua.contains("iPad") {
        "ios"
    } else if ua.contains("Android") {
        "android"
    } else if ua.contains("Windows") {
        "windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macos"
    } else if ua.contains("CrOS") {
        "chromeos"
    } else if ua.contains("Linux") {
        "linux"
    } else {
        "other"
    };
    let device = if ua.contains("iPad") || (ua.contains("Android") && !ua.contains("Mobile")) {
        "tablet"
    } else if ua.contains("Mobile") || ua.contains("iPhone") {
        "mobile"
    } else {
        "desktop"
    };
    ClientInfo {
        browser,
        browser_version,
        os,
        device,
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn common_browsers_and_devices_are_recognized() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
                "chrome",
                "linux",
                "desktop",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
                "edge",
                "windows",
                "desktop",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "safari",
                "macos",
                "desktop",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                "safari",
                "ios",
                "mobile",
            ),
            (
                "Mozilla/5.0 (Android 14; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0",
                "firefox",
                "android",
                "mobile",
            ),
            ("curl/8.0", "other", "other", "desktop"),
        ];
        for (ua, browser, os, device) in cases {
            let c = describe(ua);
            assert_eq!((c.browser, c.os, c.device), (browser, os, device), "{ua}");
        }
        assert_eq!(
            describe(cases[0].0).browser_version.as_deref(),
            Some("156.0.0.0")
        );
    }
}
