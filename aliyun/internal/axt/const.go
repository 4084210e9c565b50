package axt

// Type is a message type (uint32 on the wire, both legs).
type Type uint32

// Message types. Input, Output, Resize, Close and Status exist on both
// legs; Open and Sync only on the client leg; KeyExchange only on the
// agent leg of newer agents.
const (
	Input       Type = 0 // client → agent: bytes for the target; empty = keepalive
	Output      Type = 1 // agent → client: bytes from the target
	Resize      Type = 2 // client → agent: terminal size (ignored in port mode)
	Close       Type = 3 // client → agent: payload "1"; ignored by v578 agents
	Open        Type = 4 // client leg: declared by the browser client, never sent
	Status      Type = 5 // payload[0] is a StatusCode
	Sync        Type = 6 // client leg, schema 1.02: resend request
	KeyExchange Type = 7 // agent leg (newer agents): end-to-end key exchange
)

func (t Type) String() string {
	switch t {
	case Input:
		return "Input"
	case Output:
		return "Output"
	case Resize:
		return "Resize"
	case Close:
		return "Close"
	case Open:
		return "Open"
	case Status:
		return "Status"
	case Sync:
		return "Sync"
	case KeyExchange:
		return "KeyExchange"
	}
	return "Type(" + itoa(uint64(t)) + ")"
}

// StatusCode is byte 0 of a Status payload.
type StatusCode byte

// Status codes (client leg; the agent leg uses StatusRate and, in newer
// agents, StatusClosed).
const (
	StatusInitial StatusCode = 0
	StatusOpening StatusCode = 1
	StatusAborted StatusCode = 2 // connect failed; rest is a reason
	StatusOpened  StatusCode = 3
	StatusClosing StatusCode = 4
	StatusClosed  StatusCode = 5 // rest is a reason such as "AgentTimeout"
	StatusExited  StatusCode = 6
	StatusRate    StatusCode = 7 // rest is a rate in bits/s, big-endian, 1–4 bytes
	StatusFrozen  StatusCode = 8 // server restarting
)

func (c StatusCode) String() string {
	switch c {
	case StatusInitial:
		return "Initial"
	case StatusOpening:
		return "Opening"
	case StatusAborted:
		return "Aborted"
	case StatusOpened:
		return "Opened"
	case StatusClosing:
		return "Closing"
	case StatusClosed:
		return "Closed"
	case StatusExited:
		return "Exited"
	case StatusRate:
		return "Stream"
	case StatusFrozen:
		return "Frozen"
	}
	return "StatusCode(" + itoa(uint64(c)) + ")"
}

// Schema versions.
const (
	Schema101 = "1.01" // ali-instance-cli and the agent
	Schema102 = "1.02" // browser client: inputSeq/outputSeq, msgLength/encoding
)

// Header sizes.
const (
	ClientHeaderMin = 30 // client leg with both ids empty
	AgentHeaderLen  = 60 // agent leg
	agentIDLen      = 32
)

// ChunkSize is the largest payload Alibaba's port plugin and CLI put in
// one Input or Output message.
const ChunkSize = 2048

// DefaultRate is the pacing both the agent's port plugin and the CLI use
// until a rate is given: "200 kbps" = 204 800 bit/s.
const DefaultRate = 204800

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
