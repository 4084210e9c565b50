// Package ssmtest is a local emulator of AWS Systems Manager Session Manager for
// tests: the SSM JSON 1.1 API (StartSession, ResumeSession, TerminateSession,
// SigV4-verified), the MGS data-channel gateway (websockets on 127.0.0.1) and
// the amazon-ssm-agent side of a port/SSH session (handshake, reliability
// layer, target TCP connection), in the way net/http/httptest emulates an HTTP
// server:
//
//	srv, err := ssmtest.NewServer(ssmtest.Config{
//		Targets: map[string]string{"i-0123456789abcdef0": echoAddr},
//	})
//	defer srv.Close()
//	api := ssmsdk.NewFromConfig(srv.AWSConfig()) // real aws-sdk-go-v2 client
//
// The emulator reproduces what the real service and agent do (reference
// docs/protocol.md and ../shared/docs/ssm-protocol.md; sources aws/amazon-ssm-agent and
// aws/session-manager-plugin), not what a particular client expects:
//
//   - API errors have AWS's shape (HTTP 400, JSON {"__type","message"},
//     x-amzn-ErrorType), so the SDK returns its typed errors
//     (*types.TargetNotConnected, smithy.APIError "InvalidSignatureException").
//   - The agent sends HandshakeRequest (seq 0, flags 1) as soon as the client's
//     OpenDataChannel arrives, retransmits it until acknowledged, fails the
//     session after Config.HandshakeTimeout (15 s), sends HandshakeComplete,
//     then dials the target; until the target is connected it answers client
//     data "not ready" (no acknowledgement). Until its handshake-complete flag
//     flips it acknowledges and discards client data (reference §7.5,
//     Config.HandshakeDiscardWindow).
//   - In-order client messages are processed (written to the target) and then
//     acknowledged; out-of-order ones are acknowledged and buffered;
//     duplicates are re-acknowledged (agent ≥ 3.2.1041.0).
//   - Target → client data is read in chunks of at most 1024 bytes, one
//     message per chunk; with Pacing Realistic the loop is paced like the real
//     agent (1 ms sleep plus the agent's per-message cost, calibrated: see
//     RealisticMessagePeriod).
//   - Unacknowledged output is retransmitted head-of-line only, on a 100 ms
//     tick, with the agent's RFC 6298-like RTO (reference §6.5), forever
//     (Config.AgentRTO pins the RTO for a repair of known length).
//   - The session ends when the target closes (SSH document: EOF ends the
//     session), on the client's TerminateSession flag, on the TerminateSession
//     API or CloseChannel; the agent drains unacknowledged output for up to
//     2 s and the service then sends channel_closed to the client.
//   - When the client's websocket goes away the service pauses the agent
//     (pause_publication) and resumes it (start_publication) when the client
//     reconnects with a token from ResumeSession.
//
// Faults (SetFaults) act only on frames crossing the gateway, so both
// reliability layers must recover. Strict mode (Config.Strict) records every
// ill-formed client frame (Violations).
//
//   - AWS-StartPortForwardingSession(ToRemoteHost) documents run smux v1
//     (mux mode) when the agent and client versions call for it (reference
//     §8.1), basic mode otherwise.
//   - Optional service-side IdleTimeout and MaxSessionDuration.
//
// The emulator was checked against AWS's own session-manager-plugin (see
// plugin_test.go; the build in ../shared/peers/aws, or JUMPLESS_SSM_PLUGIN)
// and the aws CLI (SigV4).
//
// # Gateway mode: AWS's real agent behind the emulator
//
// The server also plays MGS for a real amazon-ssm-agent that dials in
// (../shared/docs/ssm-real-peers.md §3.3, the agent's source): with
// Config.TLS (the agent forces https and wss), the configuration from
// AgentConfig (container mode, a custom identity, every endpoint at the
// server), the server's Credentials in the agent's environment and
// CACertPEM as its SSL_CERT_FILE, the agent
//
//   - calls CreateControlChannel (POST /v1/control-channel/<instance>,
//     SigV4 for service "ssmmessages", answered HTTP 201 with an XML token)
//     and opens its control channel websocket (SigV4-signed upgrade, then a
//     text OpenControlChannel with the token); WaitAgent and Agents see it;
//   - gets each StartSession for its instance id as interactive_shell on the
//     control channel: the document's content and its parameters as plain
//     strings (a real agent attached for an instance id takes precedence
//     over Config.Targets);
//   - calls CreateDataChannel and opens its end of the data channel
//     (SigV4-signed, first frame OpenDataChannel with ClientInstanceId);
//     the gateway relays binary frames verbatim between it and the client,
//     consumes agent_session_state, drops what is sent to an end that is
//     not connected (both ends retransmit) and loses what is in a socket
//     that dies (KillWebsocket for the client's, KillAgentWebsocket for the
//     agent's, which the agent reopens by itself);
//   - reports each ended session with agent_task_complete, which the server
//     acknowledges (agent_task_acknowledge) and counts
//     (Stats.AgentTasksCompleted) before it closes the client's channel; a
//     session the service ends (TerminateSession, CloseChannel, timeouts,
//     Close) is sent channel_closed on the control channel.
//
// Faults, strict mode and the counters apply as with the emulated agent;
// the agent-side counters (handshakes, retransmissions, pacing) count only
// the emulated agent. Example_realAgent shows how to point an agent (for
// instance in a container) at a server; the project's internal/realagent
// package runs the build in ../shared/peers/aws in private namespaces.
//
// What is not emulated: shell/command documents, KMS encryption, the
// agent's own websocket reconnect (its link to the service never breaks
// here), the remote-host deny list.
package ssmtest
