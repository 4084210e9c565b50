// Package ssm is a client for AWS Systems Manager Session Manager port
// sessions: it starts a session with the SSM API (ssm:StartSession, document
// AWS-StartSSHSession by default), opens the session's data channel over a
// WebSocket and speaks the data-channel protocol, and hands the remote TCP
// stream back as a [*Session], which implements [net.Conn].
//
// The wire format lives in package ssm/internal/wire; the protocol reference
// is ../shared/docs/ssm-protocol.md, summarised in docs/protocol.md ("the reference" in comments below).
//
// # Layers
//
//   - api.go: the control plane (StartSession, ResumeSession,
//     TerminateSession) through the [API] interface, which the AWS SDK's
//     *ssm.Client satisfies.
//   - transport.go: one WebSocket at a time, with a reader goroutine, a single
//     writer goroutine that sends acknowledgements and control messages
//     before data, a ping/pong liveness check, and reconnection
//     (ResumeSession, redial of the original StreamUrl, resend of everything
//     unacknowledged).
//   - reliability.go, rto.go: per-direction sequence numbers, immediate
//     acknowledgements, re-acknowledged duplicates, a reorder buffer, fast
//     retransmission of messages that later acknowledged ones show lost, an
//     RFC 6298 timer (Karn's rule, exponential back-off) that resends what
//     was sent before an acknowledged message and otherwise only the
//     earliest expired one, and bounded buffers that apply back-pressure
//     instead of dropping data.
//   - handshake.go: the agent handshake (reference §7) and the first-write
//     hold (§7.5).
//   - session.go: the [net.Conn].
//
// # Behaviour
//
// Payload bytes are never rewritten. Writes are coalesced into messages of up
// to [Config.MaxPayload] bytes and sent without artificial delay, never with
// an empty payload. When the WebSocket breaks, the session resumes
// transparently while the service still knows it; the caller sees neither an
// error nor a lost byte. When the service closes the channel, Read returns
// the buffered data and then a [*ChannelClosedError] carrying the service's
// explanation, if any (for example the agent's "Unable to connect to
// specified port"). Read never returns io.EOF: channel_closed does not tell
// a target that closed the connection from a session terminated by someone
// else, and a stream cut short must never look complete. Every ending
// other than Close is reported by [Session.Done] and [Session.Err] at once
// and returned by Read and Write; after Close they return [ErrClosed]
// (which matches net.ErrClosed).
//
// Nothing in this package logs or returns tokens, keys or credentials.
package ssm
