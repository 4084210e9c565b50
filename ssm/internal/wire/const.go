// Package wire is the Session Manager data-channel wire format: the 120-byte
// message header, payload types, flag payloads and the JSON bodies that
// travel inside messages (acknowledgements, handshake, channel_closed).
//
// The layout is documented in docs/protocol.md (reference §4). Both the
// client (package ssm) and the emulator (package ssm/ssmtest) use this codec,
// so the bytes each side puts on the wire come from one place.
package wire

// HeaderLength is the value of the HeaderLength field: the offset of the
// PayloadLength field, i.e. the header size without that 4-byte field.
const HeaderLength = 116

// HeaderSize is the number of bytes before the payload.
const HeaderSize = HeaderLength + 4

// SchemaVersion is the only message schema version either AWS peer writes.
const SchemaVersion = 1

// Field offsets inside the header.
const (
	offHeaderLength  = 0
	offMessageType   = 4
	offSchemaVersion = 36
	offCreatedDate   = 40
	offSequence      = 48
	offFlags         = 56
	offMessageID     = 64
	offDigest        = 80
	offPayloadType   = 112
	offPayloadLength = 116
	messageTypeLen   = 32
)

// Message types (the MessageType header field).
const (
	InputStreamData   = "input_stream_data"  // client → agent, sequenced
	OutputStreamData  = "output_stream_data" // agent → client, sequenced
	Acknowledge       = "acknowledge"
	ChannelClosed     = "channel_closed"
	StartPublication  = "start_publication"
	PausePublication  = "pause_publication"
	AgentSessionState = "agent_session_state"
)

// PayloadType is the PayloadType header field.
type PayloadType uint32

// Payload types (reference §4.5).
const (
	PayloadNone                 PayloadType = 0 // acknowledge, agent_session_state
	PayloadOutput               PayloadType = 1
	PayloadError                PayloadType = 2
	PayloadSize                 PayloadType = 3
	PayloadParameter            PayloadType = 4
	PayloadHandshakeRequest     PayloadType = 5
	PayloadHandshakeResponse    PayloadType = 6
	PayloadHandshakeComplete    PayloadType = 7
	PayloadEncChallengeRequest  PayloadType = 8
	PayloadEncChallengeResponse PayloadType = 9
	PayloadFlag                 PayloadType = 10
	PayloadStdErr               PayloadType = 11
	PayloadExitCode             PayloadType = 12
)

// Header Flags values as the AWS peers send them (no peer reads them).
const (
	FlagsNone uint64 = 0
	FlagsSYN  uint64 = 1 // agent's first output_stream_data
	FlagsFIN  uint64 = 2
	FlagsAck  uint64 = 3 // acknowledge, agent_session_state
)

// Flag is the 4-byte big-endian payload of a PayloadFlag message.
type Flag uint32

// Flag payload values (reference §4.6).
const (
	DisconnectToPort   Flag = 1
	TerminateSession   Flag = 2
	ConnectToPortError Flag = 3
)

// ActionStatus values in a HandshakeResponse.
const (
	ActionSuccess     = 1
	ActionFailed      = 2
	ActionUnsupported = 3
)

// SessionTypePort is the SessionType the agent requests for port and SSH sessions.
const SessionTypePort = "Port"
