// Package axt is the wire codec of Alibaba Cloud Assistant's Session
// Manager ("axt" is the host name of its server): the client leg (schema
// 1.01 and 1.02 headers: 30 bytes of fixed fields plus two length-prefixed
// ids) and the agent leg (a fixed 60-byte header). See docs/aliyun.md.
//
// All integers are little-endian except inside Status payloads. A
// decoder takes the payload as everything after the header: the length
// field is recorded (Message.DeclaredLength) but never used to slice, as
// Alibaba's own agent and CLI do. Encoders always write the real payload
// length. Decoded payloads alias the input buffer.
package axt
