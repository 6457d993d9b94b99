//! A connection to the scheduler with the user's credentials.

use anyhow::{Result, bail};
use berth_api::quic;
use berth_api::wire::{Request, Response};

use crate::config::ClientConfig;

/// The environment variable holding a bearer token to connect with.
pub const TOKEN_VAR: &str = "BERTH_TOKEN";

/// An open, authenticated connection.
pub struct Client {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
}

impl Client {
    /// Connects to the scheduler named in `config`, with its client
    /// certificate, or, when `$BERTH_TOKEN` is set, without one and
    /// authenticated by that bearer token.
    pub async fn connect(config: &ClientConfig) -> Result<Client> {
        let token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
        let tls = match token {
            Some(_) => quic::anonymous_client_config(&config.certificate_authority)?,
            None => quic::client_config(&config.identity(), &config.certificate_authority)?,
        };
        let endpoint = quic::client_endpoint(config.server, tls)?;
        let connection = quic::connect(&endpoint, config.server).await?;
        let client = Client {
            endpoint,
            connection,
        };
        if let Some(token) = token {
            client.call(&Request::Authenticate { token }).await?;
        }
        Ok(client)
    }

    /// The scheduler's address.
    pub fn server(&self) -> std::net::SocketAddr {
        self.connection.remote_address()
    }

    /// Sends one request; a server-side error becomes `Err` with its message.
    pub async fn call(&self, request: &Request) -> Result<Response> {
        match quic::call(&self.connection, request).await? {
            Response::Error(e) => bail!("{e}"),
            response => Ok(response),
        }
    }

    /// Sends one request and returns the answer as it is, a
    /// `Response::Error` included, for callers that act on the error's
    /// code (`berth drain` retries refused evictions).
    pub async fn call_answer(&self, request: &Request) -> Result<Response> {
        Ok(quic::call(&self.connection, request).await?)
    }

    /// Sends one request on a new stream and returns the stream's
    /// receiving side, for answers of several frames (`Logs`).
    pub async fn open(&self, request: &Request) -> Result<quinn::RecvStream> {
        let (mut send, recv) = self.connection.open_bi().await?;
        quic::send_frame(&mut send, request).await?;
        send.finish()?;
        Ok(recv)
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
