// Package aliyun opens byte streams to a TCP port through Alibaba Cloud
// Assistant's Session Manager: the ECS OpenAPI StartTerminalSession (via
// Alibaba's Go SDK for ECS) gives a WebSocketUrl, and each websocket on it
// carries one TCP connection that the Cloud Assistant agent on the
// instance opens to PortNumber (on the instance, or on TargetServer
// through it).
//
// [Dial] starts a session and returns its first connection as a
// [*Conn] (a net.Conn); closing it ends the session. [Start] returns the
// [*Session] itself, whose [Session.Dial] opens further connections on the
// same session (one websocket each) until [Session.Close].
//
// What the protocol does not give, the Conn does not pretend: the agent
// never signals that the target closed its side, so a Conn never returns
// io.EOF; a lost websocket or a Status from the server is an error
// (errors.Is(err, ErrSessionLost) or a *StatusError). Run SSH (keepalives)
// or a database protocol on top, which knows where its data ends.
//
// Pacing: uploads go in chunks of at most 2048 bytes, paced to the rate of
// the last Status 7 from the server (until then Config.UploadRate,
// default 204 800 bit/s ≈ 24.7 KB/s, as Alibaba's CLI does). Downloads
// are paced by the agent (≈ 24.3 KB/s per connection unless the server
// raises it), so throughput comes from parallel sessions.
//
// Wire format and sources: docs/aliyun.md.
package aliyun
