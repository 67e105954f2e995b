//! Subscribers: joined for good to a connection of their own to the pub/sub shard.

use super::*;

impl Client {
    /// Joins the client to a connection of its own to the pub/sub shard for good.
    pub(super) async fn pass_through(
        &mut self,
        mut client: crate::transport::stream::Stream,
        first: Bytes,
        rest: BytesMut,
    ) {
        let routes = self.core.routes();
        let Some(addr) = routes.primary(FIRST_SHARD).map(str::to_string) else {
            let _ = client
                .write_all(b"-CLUSTERDOWN The proxy has no topology yet\r\n")
                .await;
            return;
        };
        let mut handshake: Vec<&[&[u8]]> = Vec::new();
        let auth = self.core.settings.backend_auth.clone();
        let auth = auth.as_ref().map(|a| a.command());
        if let Some(a) = &auth {
            handshake.push(a);
        }
        let hello: [&[u8]; 2] = [b"HELLO", b"3"];
        if self.proto == Protocol::Resp3 {
            handshake.push(&hello);
        }
        // The joined client may only subscribe, unsubscribe, PING, QUIT and RESET, as on a
        // RESP2 subscribed connection: nothing else reaches the node through this connection.
        let subscriber: [&[u8]; 2] = [b"AA.TOPOLOGY", b"SUBSCRIBEONLY"];
        handshake.push(&subscriber);
        let backend = match crate::proxy::backend::open(&addr, &handshake, self.core.backend_tls())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let text = format!("CLUSTERDOWN the pub/sub shard is unreachable ({addr}: {e})");
                let _ = client.write_all(&error_bytes(&text)).await;
                return;
            }
        };
        let mut backend = backend;
        if backend.write_all(&first).await.is_err() || backend.write_all(&rest).await.is_err() {
            let _ = client
                .write_all(b"-ERR the pub/sub shard closed the connection\r\n")
                .await;
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    }
}
