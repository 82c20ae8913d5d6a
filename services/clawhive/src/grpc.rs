//! What every API subcommand (`chat`, `admin`, `schedule`) does first: check the
//! token and the address, and open a lazy channel to the gateway.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// A lazy channel to `addr` and the `Authorization` value for `token`; a one-line
/// reason (for exit code 2) when either is unusable.
pub fn connect(addr: &str, token: Option<&str>) -> Result<(Channel, MetadataValue<Ascii>), String> {
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("no API token: pass --token or set CLAWHIVE_TOKEN (`clawhive up` prints one)")?;
    let auth = format!("Bearer {token}")
        .parse::<MetadataValue<Ascii>>()
        .map_err(|_| "the token contains characters not allowed in a header".to_string())?;
    let endpoint = Endpoint::from_shared(addr.to_string()).map_err(|e| format!("invalid --addr {addr:?}: {e}"))?;
    Ok((endpoint.connect_lazy(), auth))
}
