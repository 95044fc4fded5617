// Package transport carries Kiln messages between two peers: a yamux
// session over one connection (normally mutual TLS 1.3), a control stream
// of framed messages ([wire.Envelope]) and one stream per file.
//
// # Sessions
//
// The dialing side calls [Dial] (or [Client] on a connection it made) and
// then [Hello]; the master calls [Server], [ReadHello] and, to turn a peer
// away, [Refuse]. Both then exchange messages with [Session.Send] and
// [Session.Recv] and files with [Session.SendFile] and [Session.AcceptFile].
// Files travel on their own flow-controlled streams, so a large upload never
// delays a control message.
//
// # Ownership
//
// A Session owns its connection: Close closes it and waits for every
// goroutine the session started. yamux keepalive pings the peer every
// Config.KeepAliveInterval and closes the session when a ping goes
// unanswered; [Session.Done] reports the end.
//
// The wire format itself is in package [kiln/transport/wire] and described
// in docs/protocol.md.
package transport
