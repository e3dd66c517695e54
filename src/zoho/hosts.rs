//! Zoho's data-centre host table (reference §9.1).

use crate::spec::types::DataCentre;

/// Token (accounts) host and API host of a data centre.
pub fn hosts(dc: DataCentre) -> (&'static str, &'static str) {
    match dc {
        DataCentre::Us => ("https://accounts.zoho.com", "https://www.zohoapis.com"),
        DataCentre::Eu => ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
        DataCentre::In => ("https://accounts.zoho.in", "https://www.zohoapis.in"),
        DataCentre::Au => (
            "https://accounts.zoho.com.au",
            "https://www.zohoapis.com.au",
        ),
        DataCentre::Jp => ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
        DataCentre::Cn => (
            "https://accounts.zoho.com.cn",
            "https://www.zohoapis.com.cn",
        ),
        DataCentre::Ca => ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
        DataCentre::Sa => ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_centre_has_https_hosts() {
        for dc in DataCentre::ALL {
            let (a, b) = hosts(dc);
            assert!(a.starts_with("https://accounts.") && b.starts_with("https://www.zohoapis."));
        }
        assert_eq!(hosts(DataCentre::Ca).0, "https://accounts.zohocloud.ca");
    }
}
