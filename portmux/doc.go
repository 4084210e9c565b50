// Package portmux runs many connections to one address over one AWS
// Session Manager port session, the way AWS's agent multiplexes them
// (reference ../shared/docs/ssm-protocol.md §8.4): the session's bytes are
// an smux v1 stream (github.com/xtaci/smux), this side is the smux client
// (stream ids odd, from 3) and the agent, the smux server, dials the target
// once per stream.
//
// What smux v1 does not give, and what this package does about it:
//
//   - No per-stream flow control: a stream whose reader stops would fill the
//     session-wide receive buffer and freeze every stream. Each [Conn]
//     therefore has a pump that reads its stream promptly into a bounded
//     buffer of its own (Config.StreamBuffer); only when that buffer is full
//     does the stream push back on the session. A reader that stops for
//     longer than StreamBuffer / rate still stalls the session: smux v1
//     offers no way to push back on one stream only.
//   - No connect confirmation: the agent does not answer a stream's SYN. A
//     failed connect comes back as a ConnectToPortError flag (without a
//     stream id) followed by the stream's FIN; a stream that ends before any
//     byte arrived while such a flag is pending fails with *link.ConnectError.
//     [Conn.Ready] waits for the first byte, so a dial of a
//     server-speaks-first protocol (MySQL) can surface that error at once.
//   - No half-close: either side's FIN closes the agent's target connection
//     completely. [Conn.CloseWrite] therefore sends nothing and returns an
//     error matching [ErrNoHalfClose] (and errors.ErrUnsupported).
//
// When the session dies, Read and Write return an error wrapping
// [ErrSessionDown] and the session's cause, never io.EOF.
package portmux
