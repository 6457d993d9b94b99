//! A connection to the scheduler with the user's credentials.

use anyhow::{Result, bail};
use berth_api::quic;
use berth_api::wire::{Request, Response};

use crate::config::ClientConfig;

/// An open, authenticated connection.
pub struct Client {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
}

impl Client {
    /// Connects to the scheduler named in `config`.
    pub async fn connect(config: &ClientConfig) -> Result<Client> {
        let tls = quic::client_config(&config.identity(), &config.certificate_authority)?;
        let endpoint = quic::client_endpoint(config.server, tls)?;
        let connection = quic::connect(&endpoint, config.server).await?;
        Ok(Client {
            endpoint,
            connection,
        })
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
